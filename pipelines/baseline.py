"""The classical baseline: sentence embeddings + kNN or logistic regression (no LLM).

A team must hear that a 22 M-parameter embedder and scikit-learn meet the target before it
spends on GPUs (FIELD-NOTES: kNN scored 0.97 on banking77 in 4 s). kNN and logistic regression
are compared by cross-validation on the *train* set; the eval set only scores the winner.
"""

from __future__ import annotations

import time

from .base import PipelineOutput, Prediction, RunContext, SkipPipeline


def embed(model, texts: list[str], progress, desc: str, batch_size: int = 64):
    import numpy as np

    chunks = []
    progress(desc, 0, len(texts))
    for i in range(0, len(texts), batch_size):
        part = texts[i: i + batch_size]
        chunks.append(model.encode(part, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False))
        progress(desc, min(i + batch_size, len(texts)), len(texts))
    return np.vstack(chunks) if chunks else np.zeros((0, 1))


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
        k = min(ctx.spec.baseline.k, len(train))
        candidates = {
            f"kNN (k={k}, cosine, distance-weighted)": KNeighborsClassifier(n_neighbors=k, weights="distance",
                                                                            metric="cosine"),
            "logistic regression": LogisticRegression(max_iter=2000, C=10.0),
        }
        counts = {lab: y.count(lab) for lab in set(y)}
        folds = min(5, min(counts.values()))
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
        tok = self.embedder.tokenizer
        self.train_tokens = sum(len(tok(e.input)["input_ids"]) for e in train)

    def predict(self, examples) -> PipelineOutput:
        t0 = time.perf_counter()
        X = embed(self.embedder, [e.input for e in examples], self.ctx.progress, "baseline: classifying")
        labels = self.clf.predict(X)
        secs = time.perf_counter() - t0
        tok = self.embedder.tokenizer
        preds = [
            Prediction(e.id, str(lab), len(tok(e.input)["input_ids"]), 0) for e, lab in zip(examples, labels)
        ]
        n = max(1, len(preds))
        return PipelineOutput(
            preds,
            timings={"embed_train": round(self.embed_seconds, 3), "fit": round(self.fit_seconds, 3),
                     "predict": round(secs, 3)},
            usage={"prompt_tokens_mean": sum(p.prompt_tokens for p in preds) / n, "output_tokens_mean": 0,
                   "train_tokens": self.train_tokens, "seconds_per_request": secs / n},
            details={"classifier": self.choice, "cv_accuracy": self.cv, "embedding": self.ctx.spec.models.embedding},
        )
