"""Distilling a Whisper encoder: log-mel features in, the teacher's encoder states as targets.

ResidualTransformer (Wang & Li, ICASSP 2024) trains the shared-weight speech encoder; after a
post-training fit (``layershare compress --stacks encoder``) this task recovers what the fit
lost, with TinyBERT's hidden-state loss of the encoder task (train/distill.py): the mean
squared error of the student encoder's output against the dense teacher's, over every
encoder frame, or the mean over every layer's output (``distill.hidden: all``)::

    L = 1 / (B T d) * sum_{b, t} ||h_S(b, t) - h_T(b, t)||^2      (T = 1500 frames per clip)

Every frame counts, padding included: the decoder's cross-attention reads all 1500 of them.
Batches are utterances of the prepared ``espeak-en`` splits (train for the loss, valid for
the checkpoints, test for the final figures), each through transformers'
``WhisperFeatureExtractor`` when its batch is built (80 x 3000 floats per clip: the whole
split would not fit in memory as features). Only the encoder trains; the decoder is frozen
(the loss does not reach it). Reported: the frame-weighted MSE and the mean cosine between
the student's and the teacher's output frames.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import LayershareError
from .distill import _Teacher, hidden_mse
from .tasks import Task, to_device


class DistillSpeechTask(Task):
    kind = "distill-speech"

    def __init__(self, cfg, splits, teacher, student):
        from ..formats.whisper import feature_extractor

        self.teacher, self.student = _Teacher(teacher), student
        self.extractor = feature_extractor(teacher.config)
        self.frames = int(teacher.config.max_source_positions)
        super().__init__(cfg, None, splits)

    def prepare(self, split, utterances):
        long = [u for u in utterances if u.seconds > 30]
        if long:
            raise LayershareError(f"{split} utterance {long[0].id} lasts {long[0].seconds:.1f} "
                                  "s; Whisper reads at most 30 s")
        if not utterances:
            raise LayershareError(f"the {split} split holds no utterances")
        return list(utterances)

    def batch(self, split, indices):
        from ..formats.whisper import SAMPLING_RATE

        audio = [self.items[split][i].audio for i in indices]
        features = self.extractor(audio, sampling_rate=SAMPLING_RATE,
                                  return_tensors="pt").input_features
        n = len(indices) * self.frames
        return {"features": features, "targets": n, "tokens": n}

    def build_model(self):
        model, self.student = self.student, None
        return model

    def trainable_root(self, model):
        """The module whose parameters may train: the encoder."""
        return model.model.encoder

    def hidden(self, model, features: Tensor) -> list[Tensor]:
        every = self.cfg.distill.hidden == "all"
        dtype = next(model.parameters()).dtype
        out = model.model.encoder(features.to(dtype), output_hidden_states=every)
        return list(out.hidden_states[1:]) if every else [out.last_hidden_state]

    def loss(self, model, batch, train=True):
        with torch.no_grad():
            teacher = self.hidden(self.teacher.on(batch["features"].device), batch["features"])
        student = self.hidden(model, batch["features"])
        mask = torch.ones(student[0].shape[:2], device=student[0].device)
        return hidden_mse(student, teacher, mask)

    @torch.no_grad()
    def evaluate(self, model, split, device, autocast=nullcontext, limit=0) -> dict:
        """Frame-weighted MSE and mean cosine of output frames to the teacher's."""
        total, cos, count = 0.0, 0.0, 0
        was_training = model.training
        model.eval()
        teacher = self.teacher.on(device)
        for batch in self.eval_batches(split, self.cfg.eval.batch_size, limit):
            batch = to_device(batch, device)
            with autocast():  # one forward each: the loss and the cosine share them
                s = self.hidden(model, batch["features"])
                t = self.hidden(teacher, batch["features"])
            mask = torch.ones(s[0].shape[:2], device=s[0].device)
            total += float(hidden_mse(s, t, mask)) * batch["targets"]
            cos += float(F.cosine_similarity(s[-1].float(), t[-1].float(), dim=-1).sum())
            count += batch["targets"]
        model.train(was_training)
        return {"loss": total / max(count, 1), "cosine": cos / max(count, 1), "targets": count}


def build_speech_task(cfg, student, teacher) -> DistillSpeechTask:
    """The speech task for a Whisper teacher and student on a prepared speech recipe."""
    from ..compress.speech import SPEECH_CALIB, is_speech_model, speech_splits

    if not (is_speech_model(teacher) and is_speech_model(student)):
        raise LayershareError("speech distillation needs a Whisper teacher and a compressed "
                              "Whisper student")
    if cfg.data.name not in SPEECH_CALIB:
        raise LayershareError(f"a Whisper model distils on speech: --data "
                              f"{' or '.join(SPEECH_CALIB)}, not {cfg.data.name}")
    splits = speech_splits(cfg.data.name, cfg.data.dir)
    return DistillSpeechTask(cfg, splits, teacher, student)
