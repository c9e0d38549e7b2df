"""objects: the COCO detectors (SSD-MobileNetV2 packaged, Faster R-CNN fetched) with the
ImageNet classifier for the whole image. Imports models' shared modules and runtimes."""
