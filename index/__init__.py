"""Building and loading the search index (dense FAISS + bm25s lexical + passage store).

build.build_index writes an index directory; store.SearchIndex.load validates and serves it;
encoder.load_encoder loads packaged embedding models offline. Depends on corpus only.
"""
