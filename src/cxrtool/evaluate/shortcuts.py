"""Shortcut baselines: how well does metadata alone predict each label?

Public COVID-19 collections are confounded: the view position (PA / AP / AP Supine), the source
dataset, age or sex can predict the label on their own, and a network can score well by reading
how an image was taken rather than the lungs. So beside the model's AUROC, `evaluate` reports the
AUROC of predictors that see only metadata: one logistic regression per metadata column (one-hot
for categories, standardised numbers with a missing-value indicator) and one on all of them
together, fitted on the training split and scored on the evaluated split with the same patient
bootstrap as the model. When a metadata-only predictor reaches the model's interval, the report
warns: the model's number alone then says little about whether it looks at the lungs. It also
warns, whatever the model scored, when a label's positives all come from one source and other
sources supply negatives (the combined NIH + COVID-19 set): the source then separates the classes.
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


def source_confounding(eval_frame: pd.DataFrame, eval_targets: np.ndarray, labels: list[str]) -> list[str]:
    """Sentences for each label whose positives all come from one source while others supply negatives.

    On a set joined from collections (`prepare combine`: every COVID-19 positive is a Cohen image,
    most negatives are NIH images) the source alone then separates most of the classes, and the
    model's AUROC mixes "is it COVID-19" with "is it from that collection".
    """
    if "source" not in eval_frame.columns:
        return []
    source = _categorical(eval_frame["source"]).to_numpy()
    if len(np.unique(source)) < 2:
        return []
    out = []
    for j, label in enumerate(labels):
        y = eval_targets[:, j]
        pos, neg = source[y >= 0.5], source[y < 0.5]
        if len(pos) == 0 or len(neg) == 0 or len(np.unique(pos)) > 1:
            continue
        home = pos[0]
        elsewhere = int((neg != home).sum())
        if elsewhere == 0:
            continue
        out.append(
            f"{label}: all {len(pos)} positives come from one source ({home}), and {elsewhere} of its "
            f"{len(neg)} negatives from other sources; the source alone separates those, so the model's "
            f"AUROC measures the collection as much as the finding (compare it with the 'source' baseline "
            f"and with the AUROC on {home}'s images alone)"
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
    confounded = source_confounding(eval_frame, eval_targets, labels)
    return {
        "fitted_on": fitted_on,
        "columns": columns,
        "predictors": scored,
        "confounded": confounded,
        "warnings": confounded + shortcut_warnings(model_labels, scored),
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
    confounded = source_confounding(index.iloc[rows], targets, labels)
    return {
        "fitted_on": "the other folds (cross-fitted)",
        "columns": columns,
        "predictors": scored,
        "confounded": confounded,
        "warnings": confounded + shortcut_warnings(model_labels, scored),
    }


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
