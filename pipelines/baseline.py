"""The classical baseline: sentence embeddings + kNN or logistic regression (no LLM).

A team must hear that a 22 M-parameter embedder and scikit-learn meet the target before it
spends on GPUs (FIELD-NOTES: kNN scored 0.97 on banking77 in 4 s). kNN and logistic regression
are compared by cross-validation on the *train* set; the eval set only scores the winner.
"""

from __future__ import annotations

import math
import time

from .base import PipelineOutput, Prediction, RunContext, SkipPipeline, Usage


def embed(model, texts: list[str], progress, desc: str, batch_size: int = 64):
    import numpy as np

    chunks = []
    progress(desc, 0, len(texts))
    for i in range(0, len(texts), batch_size):
        part = texts[i: i + batch_size]
        chunks.append(model.encode(part, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False))
        progress(desc, min(i + batch_size, len(texts)), len(texts))
    return np.vstack(chunks) if chunks else np.zeros((0, 1))


def knn_k(k: int, n_train: int, folds: int) -> int:
    """k no larger than the smallest set kNN is fitted on: a cross-validation fold's training part
    (n - ceil(n / folds) rows) when there are folds, else the whole train set. On an 8-row train
    set k=5 with 5 folds would fit on 6 rows... and sklearn fails ("Expected n_neighbors <=
    n_samples_fit") in every fold where it holds fewer."""
    smallest = n_train - math.ceil(n_train / folds) if folds >= 2 else n_train
    return max(1, min(k, smallest))


class BaselinePipeline:
    name = "baseline"

    def prepare(self, ctx: RunContext) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_score
        from sklearn.neighbors import KNeighborsClassifier

        from advisor.models import load_embedder

        if ctx.data.train is None or ctx.spec.type != "classification":
            raise SkipPipeline("needs a classification task with a train set")
        self.ctx = ctx
        t0 = time.perf_counter()
        self.embedder = load_embedder(ctx.spec.models.embedding)
        train = ctx.data.train.examples
        X = embed(self.embedder, [e.input for e in train], ctx.progress, "baseline: embedding train set")
        y = [e.label for e in train]
        self.embed_seconds = time.perf_counter() - t0
        counts = {lab: y.count(lab) for lab in set(y)}
        folds = min(5, min(counts.values()))
        k = knn_k(ctx.spec.baseline.k, len(train), folds)
        candidates = {
            f"kNN (k={k}, cosine, distance-weighted)": KNeighborsClassifier(n_neighbors=k, weights="distance",
                                                                            metric="cosine"),
            "logistic regression": LogisticRegression(max_iter=2000, C=10.0),
        }
        self.cv: dict[str, float] = {}
        if folds >= 2:
            cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=ctx.spec.seed)
            for name, clf in candidates.items():
                self.cv[name] = round(float(cross_val_score(clf, X, y, cv=cv, scoring="accuracy").mean()), 4)
            self.choice = max(self.cv, key=self.cv.get)
        else:
            self.choice = next(iter(candidates))
        self.clf = candidates[self.choice].fit(X, y)
        self.fit_seconds = time.perf_counter() - t0 - self.embed_seconds
        self.train_tokens = sum(self._tokens([e.input for e in train]))

    def predict(self, examples) -> PipelineOutput:
        t0 = time.perf_counter()
        X = embed(self.embedder, [e.input for e in examples], self.ctx.progress, "baseline: classifying")
        labels = self.clf.predict(X)
        secs = time.perf_counter() - t0
        full = self._tokens([e.input for e in examples], cap=False)
        window = self._window()
        preds = [Prediction(e.id, str(lab), min(t, window), 0) for e, lab, t in zip(examples, labels, full)]
        n = max(1, len(preds))
        cut = sum(t > window for t in full)
        notes = [f"{cut} of {len(full)} eval items are longer than the embedder's {window}-token window: embedded "
                 f"and priced as their first {window} tokens"] if cut else []
        return PipelineOutput(
            preds,
            timings={"embed_train": round(self.embed_seconds, 3), "fit": round(self.fit_seconds, 3),
                     "predict": round(secs, 3)},
            usage=Usage(prompt_tokens_mean=sum(p.prompt_tokens for p in preds) / n, output_tokens_mean=0,
                        train_tokens=self.train_tokens, extra={"seconds_per_request": secs / n}),
            details={"classifier": self.choice, "cv_accuracy": self.cv, "embedding": self.ctx.spec.models.embedding},
            notes=notes,
        )

    def _window(self) -> int:
        """Tokens the embedder reads: sentence-transformers cuts longer inputs there, so that is
        what is run, and priced."""
        return int(getattr(self.embedder, "max_seq_length", None) or 512)

    def _tokens(self, texts: list[str], cap: bool = True) -> list[int]:
        counts = [len(ids) for ids in self.embedder.tokenizer(texts, add_special_tokens=True)["input_ids"]] if texts else []
        return [min(c, self._window()) for c in counts] if cap else counts
