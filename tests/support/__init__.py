"""Start the product's real processes on loopback for end-to-end tests."""
