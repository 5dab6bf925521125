"""Sentence embeddings for the learned router: the contextual MiniLM encoder (`minilm`) and the static table
distilled from it (`static`), both in numpy."""
