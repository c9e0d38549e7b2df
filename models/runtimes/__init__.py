"""Runtimes the models run on: device choice, torch.compile, ONNX Runtime and the ONNX, TF and
TFLite ports to torch. Imports only models' shared modules."""
