"""detect_text: PP-OCRv4 (packaged) and EasyOCR (fetched) with their reading stages. Imports
models' shared modules and runtimes."""
