"""MTCNN's cascade (facenet-pytorch's ``detect_face``) with the per-box crops batched.

facenet-pytorch cuts every candidate box out of the image and area-resizes it alone (to
24 x 24 for R-Net, 48 x 48 for O-Net): hundreds of tiny ``interpolate`` calls per image,
measured as over half of detect_faces' time on the CPU. Here all boxes of a stage are
resized in one gather from the image's integral image (summed-area table).

The results are the same bits: area resizing of a crop is ``adaptive_avg_pool2d``, whose
bins are ``[floor(i * L / n), ceil((i + 1) * L / n))``, and whose value is the bin's sum
divided by its height, then by its width, in float32. The pixels are integers (0-255), so
the bin's sum is an exact integer either way while it stays below 2**24 (float32's exact
integers); the integral image's int sums give it exactly, and the divisions are the same.
Larger bins (images far beyond IMAGERECOGNIZE_FACES_MAX_SIDE's default) take facenet-
pytorch's own loop. Every other step is facenet-pytorch's code, called as it is.
"""

from __future__ import annotations

import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import (
    batched_nms,
    batched_nms_numpy,
    bbreg,
    fixed_batch_process,
    generateBoundingBox,
    imresample,
    pad,
    rerec,
)

EXACT_FLOAT32_SUM = 2**24


def integral_image(images: torch.Tensor) -> torch.Tensor:
    """B x C x (H + 1) x (W + 1) running sums of integer-valued B x C x H x W pixels."""
    batch, channels, height, width = images.shape
    # int32 while the whole image's sum fits, else int64: both exact.
    dtype = torch.int32 if height * width * 255 < 2**31 else torch.int64
    table = torch.zeros(
        (batch, channels, height + 1, width + 1), dtype=dtype, device=images.device
    )
    table[:, :, 1:, 1:] = images.to(dtype).cumsum(2).cumsum(3)
    return table


def area_crops(
    table: torch.Tensor,
    image_index: torch.Tensor,
    top: torch.Tensor,
    bottom: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """K x C x size x size: each crop ``[top, bottom) x [left, right)`` of image
    ``image_index`` area-resized, bit for bit as ``interpolate(crop, mode="area")``."""
    device = table.device
    steps = torch.arange(size, device=device)

    def bins(start: torch.Tensor, end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = (end - start)[:, None]
        return (
            start[:, None] + steps * length // size,
            start[:, None] + ((steps + 1) * length + size - 1) // size,
        )

    row0, row1 = bins(top, bottom)
    col0, col1 = bins(left, right)
    b = image_index[:, None, None, None]
    c = torch.arange(table.shape[1], device=device)[None, :, None, None]

    def at(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return table[b, c, rows[:, None, :, None], cols[:, None, None, :]]

    sums = (at(row1, col1) - at(row0, col1) - at(row1, col0) + at(row0, col0)).float()
    heights = (row1 - row0).float()[:, None, :, None]
    widths = (col1 - col0).float()[:, None, None, :]
    return sums / heights / widths  # adaptive_avg_pool2d's order: / kh, then / kw


def _stage_input(
    imgs: torch.Tensor,
    table: torch.Tensor | None,
    image_inds: torch.Tensor,
    y: np.ndarray,
    ey: np.ndarray,
    x: np.ndarray,
    ex: np.ndarray,
    size: int,
) -> torch.Tensor:
    """The stage's crops, resized, as facenet-pytorch cuts them (empty boxes left out)."""
    kept = np.flatnonzero((ey > y - 1) & (ex > x - 1))
    if table is None:
        crops = [imgs[image_inds[k], :, y[k] - 1 : ey[k], x[k] - 1 : ex[k]][None] for k in kept]
        return torch.cat([imresample(crop, (size, size)) for crop in crops], dim=0)
    device = imgs.device

    def column(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(values[kept].astype(np.int64)).to(device)

    return area_crops(
        table,
        image_inds[torch.from_numpy(kept).to(image_inds.device)].to(device),
        column(y - 1),
        column(ey),
        column(x - 1),
        column(ex),
        size,
    )


def detect_face(
    imgs: torch.Tensor,
    minsize: float,
    pnet: torch.nn.Module,
    rnet: torch.nn.Module,
    onet: torch.nn.Module,
    threshold: list[float],
    factor: float,
    device: torch.device,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """facenet-pytorch's ``detect_face`` for a B x H x W x 3 uint8 tensor on ``device``:
    per image, boxes (N x 5: x1, y1, x2, y2, probability) and landmarks (N x 5 x 2)."""
    model_dtype = next(pnet.parameters()).dtype
    imgs = imgs.permute(0, 3, 1, 2).type(model_dtype)

    batch_size = len(imgs)
    h, w = imgs.shape[2:4]
    m = 12.0 / minsize
    minl = min(h, w)
    minl = minl * m

    # Create scale pyramid
    scale_i = m
    scales = []
    while minl >= 12:
        scales.append(scale_i)
        scale_i = scale_i * factor
        minl = minl * factor

    # The largest bin of a 24 x 24 crop of the whole image: exact sums below 2**24.
    largest_bin = (-(-max(h, w) // 24) + 1) ** 2
    table = integral_image(imgs) if largest_bin * 255 < EXACT_FLOAT32_SUM else None

    # First stage
    boxes = []
    image_inds = []
    scale_picks = []
    offset = 0
    for scale in scales:
        im_data = imresample(imgs, (int(h * scale + 1), int(w * scale + 1)))
        im_data = (im_data - 127.5) * 0.0078125
        reg, probs = pnet(im_data)

        boxes_scale, image_inds_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold[0])
        boxes.append(boxes_scale)
        image_inds.append(image_inds_scale)

        pick = batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], image_inds_scale, 0.5)
        scale_picks.append(pick + offset)
        offset += boxes_scale.shape[0]

    boxes = torch.cat(boxes, dim=0)
    image_inds = torch.cat(image_inds, dim=0)
    scale_picks = torch.cat(scale_picks, dim=0)

    # NMS within each scale + image
    boxes, image_inds = boxes[scale_picks], image_inds[scale_picks]

    # NMS within each image
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]

    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    qq1 = boxes[:, 0] + boxes[:, 5] * regw
    qq2 = boxes[:, 1] + boxes[:, 6] * regh
    qq3 = boxes[:, 2] + boxes[:, 7] * regw
    qq4 = boxes[:, 3] + boxes[:, 8] * regh
    boxes = torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)
    boxes = rerec(boxes)
    y, ey, x, ex = pad(boxes, w, h)

    # Second stage
    if len(boxes) > 0:
        im_data = _stage_input(imgs, table, image_inds, y, ey, x, ex, 24)
        im_data = (im_data - 127.5) * 0.0078125
        out = fixed_batch_process(im_data, rnet)

        out0 = out[0].permute(1, 0)
        out1 = out[1].permute(1, 0)
        score = out1[1, :]
        ipass = score > threshold[1]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out0[:, ipass].permute(1, 0)

        # NMS within each image
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
        boxes = bbreg(boxes, mv)
        boxes = rerec(boxes)

    # Third stage
    points = torch.zeros(0, 5, 2, device=device)
    if len(boxes) > 0:
        y, ey, x, ex = pad(boxes, w, h)
        im_data = _stage_input(imgs, table, image_inds, y, ey, x, ex, 48)
        im_data = (im_data - 127.5) * 0.0078125
        out = fixed_batch_process(im_data, onet)

        out0 = out[0].permute(1, 0)
        out1 = out[1].permute(1, 0)
        out2 = out[2].permute(1, 0)
        score = out2[1, :]
        points = out1
        ipass = score > threshold[2]
        points = points[:, ipass]
        boxes = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
        image_inds = image_inds[ipass]
        mv = out0[:, ipass].permute(1, 0)

        w_i = boxes[:, 2] - boxes[:, 0] + 1
        h_i = boxes[:, 3] - boxes[:, 1] + 1
        points_x = w_i.repeat(5, 1) * points[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = h_i.repeat(5, 1) * points[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0)
        boxes = bbreg(boxes, mv)

        # NMS within each image using "Min" strategy
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

    boxes = boxes.cpu().numpy()
    points = points.cpu().numpy()
    image_inds = image_inds.cpu().numpy()
    batch_boxes = [boxes[image_inds == b].copy() for b in range(batch_size)]
    batch_points = [points[image_inds == b].copy() for b in range(batch_size)]
    return batch_boxes, batch_points
