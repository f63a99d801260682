"""The PostgreSQL + pgvector store: several machines index into one database, several `rag serve`
replicas answer from it (``--store postgresql://...``, ``[store] url``, ``RAG_STORE_URL``)."""
