"""The chatbot plugin package."""
