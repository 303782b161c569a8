"""Shortcut baselines: how well does metadata alone predict each label?

Public COVID-19 collections are confounded: the view position (PA / AP / AP Supine), the source
dataset, age or sex can predict the label on their own, and a network can score well by reading
how an image was taken rather than the lungs. So beside the model's AUROC, `evaluate` reports the
AUROC of predictors that see only metadata: one logistic regression per metadata column (one-hot
for categories, standardised numbers with a missing-value indicator) and one on all of them
together, fitted on the training split and scored on the evaluated split with the same patient
bootstrap as the model. When a metadata-only predictor reaches the model's interval, the report
warns: the model's number alone then says little about whether it looks at the lungs. A label the
image's source predicts well by itself (source-only AUROC >= SOURCE_AUROC_THRESHOLD, or within the
model's interval, or every positive from one source) is flagged as confounded by source, whatever
the model scored (`source_confounded`); `mark_source_confounded` flags it in the mean and
evaluate/by_source.py adds its AUROC within one source.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .metrics import label_report

# Metadata a radiograph's index row may carry, and how each is encoded.
CATEGORICAL = ("view", "sex", "source")
NUMERIC = ("age",)
ALL_METADATA = "all metadata"
# A label whose source-only AUROC reaches this is flagged as confounded by source, whatever the
# model scored: 0.7 is the conventional floor of "acceptable" discrimination (Hosmer and
# Lemeshow), so from there the collection an image came from is a usable predictor by itself.
# Fixed in advance, not tuned on any data set reported here.
SOURCE_AUROC_THRESHOLD = 0.7


def _categorical(values: pd.Series) -> pd.Series:
    return values.fillna("").astype(str).str.strip().replace("", "(blank)")


def available_columns(index: pd.DataFrame, fit_rows: np.ndarray) -> list[str]:
    """Metadata columns present in the index that vary within the rows the predictors learn from."""
    part = index.iloc[fit_rows]
    found = []
    for col in CATEGORICAL:
        if col in part.columns and _categorical(part[col]).nunique() > 1:
            found.append(col)
    for col in NUMERIC:
        if col in part.columns:
            values = pd.to_numeric(part[col], errors="coerce")
            if values.notna().sum() > 1 and values.std(skipna=True) > 0:
                found.append(col)
    return found


def predictor_sets(columns: list[str]) -> dict[str, list[str]]:
    """One predictor per column, plus one on all columns when there are several."""
    sets = {col: [col] for col in columns}
    if len(columns) > 1:
        sets[ALL_METADATA] = list(columns)
    return sets


def _features(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for col in columns:
        out[col] = _categorical(frame[col]) if col in CATEGORICAL else pd.to_numeric(frame[col], errors="coerce")
    return out


def _pipeline(columns: list[str]):
    # lazy: sklearn's model classes, only when shortcut baselines are fitted
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts = []
    cats = [c for c in columns if c in CATEGORICAL]
    nums = [c for c in columns if c in NUMERIC]
    if cats:
        # A category never seen in training (e.g. a new view tag) gets all-zero indicators.
        parts.append(("categories", OneHotEncoder(handle_unknown="ignore"), cats))
    if nums:
        parts.append(
            ("numbers", make_pipeline(SimpleImputer(strategy="mean", add_indicator=True), StandardScaler()), nums)
        )
    # liblinear: these are a handful of features; lbfgs's threaded BLAS setup costs 30x more here.
    return Pipeline(
        [("encode", ColumnTransformer(parts)), ("fit", LogisticRegression(solver="liblinear", max_iter=1000))]
    )


def fit_predict(
    fit_frame: pd.DataFrame, fit_targets: np.ndarray, eval_frame: pd.DataFrame, columns: list[str]
) -> tuple[np.ndarray, list[str | None]]:
    """Per label, fit on rows with an annotation and return eval probabilities (n_eval, L).

    A label with one class among the fitting rows cannot be fitted: its column is NaN and its
    reason is returned instead.
    """
    x_fit, x_eval = _features(fit_frame, columns), _features(eval_frame, columns)
    probs = np.full((len(eval_frame), fit_targets.shape[1]), np.nan)
    reasons: list[str | None] = []
    for j in range(fit_targets.shape[1]):
        y = fit_targets[:, j]
        keep = ~np.isnan(y)
        if keep.sum() == 0 or np.unique(y[keep]).size < 2:
            reasons.append("the fitting split has only one class of this label")
            continue
        model = _pipeline(columns)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on tiny data is not news here
            model.fit(x_fit[keep], y[keep].astype(int))
        probs[:, j] = model.predict_proba(x_eval)[:, 1]
        reasons.append(None)
    return probs, reasons


def score_predictors(
    probs_by_predictor: dict[str, tuple[np.ndarray, list[str | None]]],
    targets: np.ndarray,
    labels: list[str],
    groups: np.ndarray,
    n_boot: int,
    seed: int,
) -> dict[str, dict[str, dict]]:
    """{predictor: {label: {auroc, auroc_low, auroc_high, not_computable}}} on the evaluated rows."""
    scored: dict[str, dict[str, dict]] = {}
    for name, (probs, reasons) in probs_by_predictor.items():
        filled = np.where(np.isnan(probs), 0.5, probs)
        report = label_report(targets, filled, labels, groups, n_boot=n_boot, seed=seed)["labels"]
        entries = {}
        for j, label in enumerate(labels):
            r = report[label]
            reason = reasons[j] or r["not_computable"]
            entries[label] = {
                "auroc": None if reason else r["auroc"],
                "auroc_low": None if reason else r.get("auroc_low"),
                "auroc_high": None if reason else r.get("auroc_high"),
                "not_computable": reason,
                "skipped_replicates": None if reason else r.get("skipped_replicates"),
            }
        scored[name] = entries
    return scored


def shortcut_warnings(model_labels: dict[str, dict], scored: dict[str, dict[str, dict]]) -> list[str]:
    """Sentences for each metadata predictor that reaches the model's interval on a label."""
    out = []
    for label, model in model_labels.items():
        low, high = model.get("auroc_low"), model.get("auroc_high")
        if model.get("not_computable") or low is None:
            continue
        reaching = []
        for name, entries in scored.items():
            auc = entries.get(label, {}).get("auroc")
            if auc is not None and auc >= low:
                reaching.append(f"{name} {auc:.3f}" + (" (above it)" if auc > high else ""))
        if reaching:
            out.append(
                f"{label}: metadata alone reaches the model's 95% interval [{low:.3f}, {high:.3f}] "
                f"({', '.join(reaching)}); on this split the model is not shown to use more than how "
                f"and of whom the image was taken"
            )
    return out


def source_confounding(
    eval_frame: pd.DataFrame,
    eval_targets: np.ndarray,
    labels: list[str],
    source_scores: dict[str, dict] | None = None,
    model_labels: dict[str, dict] | None = None,
) -> dict[str, str]:
    """{label: sentence} for each label that the image's source predicts well on its own.

    It fires when any of these holds: the source-only predictor's AUROC is at least
    SOURCE_AUROC_THRESHOLD; it reaches the model's 95% interval; or every positive comes from one
    source while other sources supply negatives. On a set joined from collections (`prepare
    combine`: every COVID-19 positive is a Cohen image, most negatives NIH images; and Cohen's
    pneumonias make half of the Pneumonia positives) the model's AUROC then mixes "is it the
    finding" with "is it from that collection".
    """
    if "source" not in eval_frame.columns:
        return {}
    source = _categorical(eval_frame["source"]).to_numpy()
    if len(np.unique(source)) < 2:
        return {}
    source_scores, model_labels = source_scores or {}, model_labels or {}
    out = {}
    for j, label in enumerate(labels):
        y = eval_targets[:, j]
        pos, neg = source[y >= 0.5], source[y < 0.5]
        if len(pos) == 0 or len(neg) == 0:
            continue
        names, counts = np.unique(pos, return_counts=True)
        home = names[np.argmax(counts)]
        home_pos, home_neg = int(counts.max()), int((neg == home).sum())
        why = []
        auc = (source_scores.get(label) or {}).get("auroc")
        if auc is not None and auc >= SOURCE_AUROC_THRESHOLD:
            why.append(f"source alone scores an AUROC of {auc:.3f} (>= {SOURCE_AUROC_THRESHOLD})")
        model = model_labels.get(label) or {}
        if auc is not None and model.get("auroc_low") is not None and auc >= model["auroc_low"]:
            why.append(
                f"source alone ({auc:.3f}) reaches the model's interval [{model['auroc_low']:.3f}, {model['auroc_high']:.3f}]"
            )
        if len(names) == 1 and home_neg < len(neg):
            why.append("every positive comes from one source")
        if not why:
            continue
        out[label] = (
            f"{label}: {'; '.join(why)}: {home_pos} of its {len(pos)} positives come from {home}, and {home_neg} of "
            f"its {len(neg)} negatives; the model's AUROC measures the collection as much as the finding (compare "
            f"it with the 'source' baseline and with the AUROC within one source); it is flagged in the mean"
        )
    return out


def shortcut_baselines(
    index: pd.DataFrame,
    labels: list[str],
    fit_rows: np.ndarray,
    fit_targets: np.ndarray,
    eval_rows: np.ndarray,
    eval_targets: np.ndarray,
    model_labels: dict[str, dict],
    n_boot: int = 1000,
    seed: int = 0,
    fitted_on: str = "train",
) -> dict | None:
    """Fit metadata-only predictors on `fit_rows`, score them on `eval_rows`; None without metadata."""
    columns = available_columns(index, fit_rows)
    if not columns:
        return None
    fit_frame, eval_frame = index.iloc[fit_rows], index.iloc[eval_rows]
    probs = {
        name: fit_predict(fit_frame, fit_targets, eval_frame, cols) for name, cols in predictor_sets(columns).items()
    }
    groups = eval_frame["patient"].to_numpy()
    scored = score_predictors(probs, eval_targets, labels, groups, n_boot, seed)
    confounded = source_confounding(eval_frame, eval_targets, labels, scored.get("source"), model_labels)
    return _result(fitted_on, columns, scored, confounded, model_labels)


def _result(fitted_on: str, columns: list[str], scored: dict, confounded: dict[str, str], model_labels: dict) -> dict:
    return {
        "fitted_on": fitted_on,
        "columns": columns,
        "predictors": scored,
        "confounded": list(confounded.values()),
        "source_confounded": confounded,
        "source_auroc_threshold": SOURCE_AUROC_THRESHOLD,
        "warnings": [*confounded.values(), *shortcut_warnings(model_labels, scored)],
    }


def cross_fitted_baselines(
    index: pd.DataFrame,
    labels: list[str],
    rows: np.ndarray,
    folds: np.ndarray,
    targets: np.ndarray,
    model_labels: dict[str, dict],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict | None:
    """Shortcut baselines for out-of-fold predictions: each fold is scored by predictors fitted
    on the other folds, exactly as the cross-validated model was."""
    columns = available_columns(index, rows)
    if not columns:
        return None
    sets = predictor_sets(columns)
    probs = {name: np.full(targets.shape, np.nan) for name in sets}
    reasons: dict[str, list[str | None]] = {name: [None] * len(labels) for name in sets}
    for fold in np.unique(folds):
        held, rest = folds == fold, folds != fold
        for name, cols in sets.items():
            p, why = fit_predict(index.iloc[rows[rest]], targets[rest], index.iloc[rows[held]], cols)
            probs[name][held] = p
            reasons[name] = [r or w for r, w in zip(reasons[name], why)]
    groups = index.iloc[rows]["patient"].to_numpy()
    scored = score_predictors({n: (probs[n], reasons[n]) for n in sets}, targets, labels, groups, n_boot, seed)
    confounded = source_confounding(index.iloc[rows], targets, labels, scored.get("source"), model_labels)
    return _result("the other folds (cross-fitted)", columns, scored, confounded, model_labels)


def shortcuts_table(result: dict, model_labels: dict[str, dict]) -> pd.DataFrame:
    """Long table (one row per predictor and label) for shortcuts.csv."""
    rows = []
    for name, entries in result["predictors"].items():
        for label, e in entries.items():
            m = model_labels.get(label, {})
            within = e["auroc"] is not None and m.get("auroc_low") is not None and e["auroc"] >= m["auroc_low"]
            rows.append(
                {
                    "predictor": name,
                    "label": label,
                    "auroc": e["auroc"],
                    "auroc_low": e["auroc_low"],
                    "auroc_high": e["auroc_high"],
                    "model_auroc": m.get("auroc"),
                    "model_auroc_low": m.get("auroc_low"),
                    "model_auroc_high": m.get("auroc_high"),
                    "reaches_model_interval": bool(within),
                    "not_computable": e["not_computable"],
                }
            )
    return pd.DataFrame(rows)


def mark_source_confounded(metrics: dict) -> None:
    """Flag the source-confounded labels in their entries and in the mean, with the mean without them.

    The mean over labels keeps them (it is what was asked for), but says which of its labels the
    source alone predicts, and gives the mean over the others beside it.
    """
    flagged = ((metrics.get("shortcuts") or {}).get("source_confounded")) or {}
    if not flagged:
        return
    for label, why in flagged.items():
        if label in metrics["labels"]:
            metrics["labels"][label]["source_confounded"] = why
    mean = metrics["mean"]
    inside = [l for l in mean.get("labels") or [] if l in flagged]
    if not inside:
        return
    rest = [l for l in mean["labels"] if l not in flagged]
    mean["source_confounded"] = inside
    mean["labels_without_source_confounded"] = rest
    mean["estimate_without_source_confounded"] = (
        float(np.mean([metrics["labels"][l]["auroc"] for l in rest])) if rest else None
    )
