"""detect_faces: MTCNN from facenet-pytorch. Imports models' shared modules and runtimes."""
