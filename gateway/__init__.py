"""SMS gateway: CMPP codec, customer-facing server, forwarder and report delivery."""
