"""The LitServe baseline for scripts/bench.py: the same model wrapped in LitServe with its own
dynamic batching (at most 4 images per call, 10 ms batch timeout), what a user would build
with it. Runs offline; LitServe's client file is not written.

    python scripts/litserve_server.py --type nsfw --port 8002
    curl -F file=@photo.jpg http://127.0.0.1:8002/api/v2/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import litserve as ls  # noqa: E402

MAX_BATCH_SIZE = 4
BATCH_TIMEOUT_S = 0.01
PARAMS = {
    "objects": {"max_labels": 10, "min_confidence": 30},
    "nsfw": {"nsfw_min_confidence": 0},
}


class RecognizerAPI(ls.LitAPI):
    """decode_request: the upload decoded and preprocessed; predict: one model call on the
    batch LitServe gathered; encode_response: the API's objects."""

    def __init__(self, type_: str):
        super().__init__(
            max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S, api_path="/api/v2/"
        )
        self.type_ = type_

    def setup(self, device: str) -> None:
        from models.registry import default_model
        from models.runtimes.device import choose_device
        from server.settings import get_settings

        self.settings = get_settings()
        cls = default_model(self.type_, None, self.settings.resolved_model_dir)
        if cls is None:
            raise RuntimeError(f"no model for {self.type_}")
        self.model = cls(choose_device(self.settings.device), self.settings.model_options())
        self.model.load()

    def decode_request(self, request):
        from models.images import decode_image, inspect_image

        data = request["file"].file.read()
        image = decode_image(
            data, inspect_image(data, self.settings.max_image_pixels), self.model.input_max_side
        )
        return image, self.model.preprocess(image)

    def batch(self, inputs):
        return inputs  # a list of (image, item): the model stacks its own inputs

    def predict(self, batch):
        from server.pipeline.batching import run_batch

        # run_batch: one model.predict per group of equal input sizes (MTCNN's pyramid needs
        # them), as any LitServe user of these models would have to do.
        outputs = run_batch(self.model, [item for _image, item in batch])
        for output in outputs:
            if isinstance(output, Exception):
                raise output
        return [(output, image, item) for output, (image, item) in zip(outputs, batch, strict=True)]

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        result, image, item = output
        analysis = self.model.postprocess(result, item, image, PARAMS.get(self.type_, {}))
        return {"status": 200, "data": {"objects": analysis.objects, **analysis.extra}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", required=True)
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    server = ls.LitServer(RecognizerAPI(args.type), accelerator="auto", timeout=300)
    server.run(port=args.port, host="127.0.0.1", generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
