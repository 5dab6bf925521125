"""The offline demo: a local OpenAI-compatible model server on 127.0.0.1 and a scripted agent session."""
