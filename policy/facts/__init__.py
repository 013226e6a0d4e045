"""Steps 1–2 of the evaluation pipeline: normalize a submission and build the facts rules test.

content    decoding by Msg_Fmt, signature, length and segments
numbers    number normalization, index keys, mobile validity
segments   7-digit segment -> province, city, carrier (phone.dat + overrides)
lists      number/segment list indexes, the API blacklist
filelist   the watched file-blacklist folder
keywords   keyword groups, one Aho–Corasick pass
templates  filed content templates
builder    FactBuilder: the message and recipient fact dicts
"""
