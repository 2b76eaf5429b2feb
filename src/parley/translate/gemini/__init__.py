"""Anthropic Messages (the hub) <-> Gemini generateContent, for AI Studio and Vertex AI alike."""
