"""Near-duplicate detection building blocks: shingling, MinHash signatures, LSH banding,
clustering and embeddings. The ``minhash`` and ``semantic`` steps are thin layers over these.
"""
