"""Model backends: Ollama, OpenAI-compatible servers, Gemini and embedded llama.cpp."""
