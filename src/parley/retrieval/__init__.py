"""Retrieval: vector stores (chunks, embeddings, hybrid search) for the RAG filter and the API."""
