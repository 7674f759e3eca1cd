"""A classifier for new classes from a handful of labelled images, using a trained few-shot run.

    clf = adapt(run, support_images, ["cat", "dog", …])
    clf.predict(images); clf.predict_proba(images)

Whatever the learner, this is its :meth:`~workbench.learners.episodic.EpisodicModule.adapt` on
the given support set — the same method its meta-validation and testing use.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence


class FewShotClassifier:
    """A classifier for new classes built by :func:`adapt` from a handful of labelled images.

    ``predict(images)`` returns class names; ``predict_proba(images)`` a ``[n, N]`` tensor.
    MAML scores with transductive BatchNorm, so pass the images to classify together.
    """

    def __init__(self, module: Any, classes: list[Any], score: Callable[[Any], Any], image_size: int,
                 channels: int, invert: bool = False) -> None:
        self.module, self.classes, self._score = module, classes, score
        self.image_size, self.channels, self.invert = image_size, channels, invert

    def logits(self, images: Any):
        import torch

        x = to_tensor_batch(images, self.image_size, self.channels)
        with torch.enable_grad():
            return self._score(1 - x if self.invert else x).detach()

    def predict_proba(self, images: Any):
        return self.logits(images).softmax(-1)

    def predict(self, images: Any) -> list[Any]:
        return [self.classes[int(i)] for i in self.logits(images).argmax(-1)]

    def __call__(self, images: Any):
        return self.predict(images)

    def __repr__(self) -> str:
        return f"FewShotClassifier({type(self.module).__name__}, classes={self.classes!r})"


def to_tensor_batch(images: Any, image_size: int, channels: int):
    """Images (tensor ``[n,C,H,W]``, PIL images or file paths) as a float batch in [0, 1]."""
    import torch

    if isinstance(images, torch.Tensor):
        x = images.float()
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.max() > 1.5:
            x = x / 255.0
        if x.shape[-1] != image_size or x.shape[-2] != image_size:
            x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear",
                                                align_corners=False)
        if x.shape[1] != channels:
            x = x.mean(1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)
        return x
    from ..data.folders import load_image

    side = (image_size, image_size)
    return torch.stack([torch.from_numpy(load_image(im, channels, side)) for im in images]).float().div_(255.0)


def adapt(run_ref: str, support_images: Any, support_labels: Sequence[Any], log: Any = None,
          invert: bool | None = None) -> FewShotClassifier:
    """A classifier for new classes from K labelled images each, using a trained few-shot run.

    Args:
        run_ref: run id, id prefix or name.
        support_images: tensor ``[n, C, H, W]`` (0–1 or 0–255), PIL images or file paths.
        support_labels: any hashable labels (class names); their first-seen order is the class order.
        invert: turn dark-on-light photos into light-on-dark (the glyph convention); default:
            on for one-channel models fed with PIL images or paths.
    """
    import torch

    from ..runlog import RunLog
    from .loading import load_learner

    rec = (log or RunLog()).get(run_ref, metrics=False)
    module, cmd = load_learner(rec)
    if not hasattr(module, "adapt"):
        raise ValueError(f"run {rec['id']} is a {rec.get('kind')!r} run; adapt() needs a few-shot run")
    classes = list(dict.fromkeys(support_labels))
    y = torch.tensor([classes.index(lab) for lab in support_labels])
    if invert is None:
        invert = cmd.channels == 1 and not isinstance(support_images, torch.Tensor)
    sx = to_tensor_batch(support_images, cmd.image_size, cmd.channels)
    try:
        score = module.adapt(1 - sx if invert else sx, y, len(classes))
    except ValueError as exc:  # e.g. MAML's head is n_way wide
        raise ValueError(f"support_labels: {len(classes)} classes given; {exc}") from None
    return FewShotClassifier(module, classes, score, cmd.image_size, cmd.channels, invert)
