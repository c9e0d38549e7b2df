"""celebrities: MTCNN faces described by dlib's face ResNet (its torch port) and matched
against the gallery. Imports models' shared modules, runtimes and detect_faces."""
