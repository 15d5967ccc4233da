"""Reading raw documents from local files, Hugging Face datasets and the embedded default corpus."""
