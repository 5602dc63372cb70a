"""Tokenization: byte-level BPE training and the packed, sharded Arrow token dataset.

``splits`` (train/val rule), ``bpe`` (tokenizer), ``sample`` + ``tokenizer_stage`` (stage ``tokenizer``),
``encode`` + ``packing`` + ``shards`` + ``dataset`` (Beam stage ``tokens``), ``verify`` (audits behind the
asset checks), ``corpus`` (small documents stages for tests and benchmarks).
"""
