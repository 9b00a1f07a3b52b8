"""The personal hard set on the dashboard: save a drawing with its true label, scores, items, export and import.

Shared by the Draw page (everything) and the Compare page (the scores). The set lives on disk with the
runs (core.hardset); scores are cached per checkpoint version and set content, so a stroke or a
rerun never scores anything again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core import hardset
from core.checkpoints import CheckpointError
from core.data import DATASETS, get_spec
from core.hardset import HardItem, HardSet, HardSetError, HardSetScore
from pages.common import _, class_names, error_text, ngettext, num, pct, say, upscale

ITEMS_SHOWN = 24  # newest items shown with their answers and a delete button
IMPORT_KEY = "hardset_import"  # the import uploader
NOTICE_KEY = "hardset_notice"  # (kind, text) left by a save, delete or import for the next run
ZOOM = 3  # screen pixels per MNIST pixel for the items' thumbnails
Scores = list[tuple[hardset.ModelToScore, HardSetScore | None, str | None]]  # (model, score, why none)


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_set(folder: str, stamp: tuple[tuple[str, int, int], ...]) -> HardSet:
    """The set read from disk once per version of its files (`stamp`); shared, never modified."""
    return hardset.load_hardset(Path(folder).parent)


def load_set() -> HardSet:
    """The hard set as on disk now, read again only when its files changed; damaged files reported on the page."""
    loaded = cached_set(str(hardset.hardset_dir()), hardset.hardset_stamp())
    for problem in loaded.problems:
        st.warning(say(problem), icon=":material/broken_image:")
    return loaded


@st.cache_data(show_spinner=False, max_entries=256)
def cached_score(path: str, modified: float, fingerprint: str, _items: tuple[HardItem, ...]) -> HardSetScore:
    """One checkpoint's score; the cache key is its file version and the set's content (`_items` is not hashed)."""
    return hardset.score_checkpoint(path, _items)


def scores(items: tuple[HardItem, ...]) -> Scores:
    """(model, its score or None, why it could not be scored) for the default model and every run's best."""
    fingerprint = hardset.set_fingerprint(items)
    results: Scores = []
    for model in hardset.models_to_score():
        try:
            score = cached_score(str(model.path), model.path.stat().st_mtime, fingerprint, items)
            results.append((model, score, None))
        except (OSError, CheckpointError) as error:
            results.append((model, None, error_text(error)))
    return results


def model_name(model: hardset.ModelToScore) -> str:
    return _("Default model (shipped)") if model.key == "default" else model.key


def scores_table(results: Scores) -> pd.DataFrame:
    """One row per model: its dataset, the items of that dataset, how many it gets right, accuracy."""
    rows = []
    for model, score, problem in results:
        dataset = get_spec(score.dataset).title if score is not None else "—"
        rows.append({
            _("model"): model_name(model), _("dataset"): dataset,
            _("items"): len(score.answers) if score is not None else 0,
            _("right"): score.right if score is not None else 0,
            _("accuracy"): (pct(score.accuracy, 1) if score is not None and score.accuracy is not None
                            else problem or _("no item of its dataset")),
        })
    return pd.DataFrame(rows)


def show_scores(items: tuple[HardItem, ...], results: Scores) -> None:
    """The scores of every model as a table, with a sentence on what they mean."""
    counts = {key: sum(item.dataset == key for item in items) for key in DATASETS}
    st.markdown(_("**Your hard set**: {mnist} MNIST and {fashion} Fashion-MNIST items. Each model is scored on the "
                  "items of the dataset it was trained on.").format(mnist=num(counts["mnist"]),
                                                                     fashion=num(counts["fashion-mnist"])))
    st.table(scores_table(results), hide_index=True)  # a few rows: plain HTML, readable by tests and screen readers


def _notice() -> None:
    kind, text = st.session_state.pop(NOTICE_KEY, (None, None))
    if kind == "success":
        st.success(text, icon=":material/check_circle:")
    elif kind == "info":
        st.info(text, icon=":material/info:")
    elif kind == "error":
        st.error(text)


def _save(image: np.ndarray, dataset: str, source: str, label_key: str) -> None:
    """The Save button's callback: store the drawing with the picked label; leave a notice for the run."""
    classes = class_names(dataset)
    label = int(st.session_state[label_key])
    try:
        result = hardset.save_item(image, dataset, label, source)
    except (HardSetError, OSError) as error:
        st.session_state[NOTICE_KEY] = ("error", error_text(error))
        return
    stored = result.duplicate_of
    st.session_state[NOTICE_KEY] = (
        ("info", _("This drawing is already in your hard set, labelled {label}.").format(label=classes[stored.label]))
        if stored is not None else ("success", _("Saved as {label}.").format(label=classes[label])))


def save_form(image: np.ndarray, dataset: str, source: str, guess: int) -> None:
    """Pick the true label of the current drawing and save it into the set (as an item of `dataset`)."""
    classes = class_names(dataset)
    label_key = f"hardset_label_{dataset}_{guess}"  # a new answer starts from itself, not from an older pick
    label_col, button_col = st.columns([2, 1], vertical_alignment="bottom")
    label_col.selectbox(_("True label of this drawing ({dataset})").format(dataset=get_spec(dataset).title),
                        range(len(classes)), index=guess, format_func=lambda index: classes[index], key=label_key)
    button_col.button(_("Save to my hard set"), icon=":material/bookmark_add:", key="hardset_save", width="stretch",
                      on_click=_save, args=(image, dataset, source, label_key))


def _delete(item: HardItem, label: str) -> None:
    hardset.delete_item(item.item_id)
    st.session_state[NOTICE_KEY] = ("info", _("Deleted one item ({label}).").format(label=label))


def show_items(items: tuple[HardItem, ...], score: HardSetScore | None, classes: tuple[str, ...],
               answer_names: tuple[str, ...]) -> None:
    """The newest items as thumbnails, each with its label, the first model's answer and a delete button."""
    answers = {answer.item_id: answer for answer in score.answers} if score is not None else {}
    shown = list(reversed(items))[:ITEMS_SHOWN]
    if len(items) > len(shown):
        st.caption(_("The newest {shown} of {count} items.").format(shown=num(len(shown)), count=num(len(items))))
    for start in range(0, len(shown), 8):
        for column, item in zip(st.columns(8), shown[start : start + 8], strict=False):
            answer = answers.get(item.item_id)
            verdict = ("" if answer is None else (" ✓" if answer.correct else " ✗ " + answer_names[answer.predicted]))
            column.image(upscale(item.pixels, ZOOM), caption=classes[item.label] + verdict)
            column.button(_("Delete"), key=f"hardset_delete_{item.item_id}", icon=":material/delete:",
                          on_click=_delete, args=(item, classes[item.label]))


def _on_import() -> None:
    upload = st.session_state.get(IMPORT_KEY)
    if upload is None:
        return
    try:
        result = hardset.import_hardset(upload.getvalue())
    except (HardSetError, OSError) as error:
        st.session_state[NOTICE_KEY] = ("error", f"**{upload.name}**: {error_text(error)}")
        return
    added = ngettext("Imported {count} new item.", "Imported {count} new items.", result.added)
    known = ngettext("{count} was already in your set.", "{count} were already in your set.", result.duplicates)
    text = _("{first} {second}").format(first=added.format(count=num(result.added)),
                                        second=known.format(count=num(result.duplicates)))
    text += "".join("\n\n- " + say(problem) for problem in result.problems)
    st.session_state[NOTICE_KEY] = ("error" if result.problems else "success", text)


def export_import(items: tuple[HardItem, ...]) -> None:
    """Download the whole set as one zip; upload such a zip to add its items."""
    export_col, import_col = st.columns(2)
    export_col.download_button(
        _("Export the hard set (.zip)"), data=lambda: hardset.export_hardset(items), file_name="hardset.zip",
        mime="application/zip", key="hardset_export", on_click="ignore", icon=":material/download:",
        disabled=not items, width="stretch",
        help=_("Every item with its 28×28 image, its raw drawing and its label; import it here or on another machine."))
    import_col.file_uploader(_("Import a hard-set export (.zip)"), type=["zip"], key=IMPORT_KEY, on_change=_on_import,
                             max_upload_size=hardset.MAX_EXPORT_BYTES // 2**20)  # the app's 2 MB is for one image


def hard_set_panel(image: np.ndarray | None, dataset: str, source: str, guess: int,
                   first_score_key: str, answer_names: tuple[str, ...]) -> None:
    """The Draw page's hard-set tab: save the drawing, every model's score, the items, export and import.

    Without a drawing (`image` None: an empty canvas) everything but saving: the set can be looked at,
    exported and imported before anything is drawn."""
    st.markdown(_("Keep the drawings a model gets wrong, with their true labels, and see how every model does on "
                  "them. The set is stored with the runs (in {folder}), so it survives restarts.").format(
        folder=f"`{hardset.hardset_dir()}`"))
    if image is None:
        st.caption(_("Draw or upload something to save it here."))
    else:
        save_form(image, dataset, source, guess)
    _notice()
    loaded = load_set()
    if not loaded.items:
        st.info(_("Your hard set is empty: save a drawing above, or import an export below."))
    else:
        results = scores(loaded.items)
        show_scores(loaded.items, results)
        first = next((score for model, score, _problem in results if model.key == first_score_key), None)
        own = loaded.of_dataset(dataset)
        show_items(own, first, class_names(dataset), answer_names)
    export_import(loaded.items)


def compare_section() -> None:
    """The Compare page's view: every model's score on the hard set, or how to start one."""
    loaded = load_set()
    if not loaded.items:
        st.caption(_("No hard set yet: on the Draw page, save drawings with their true labels to score every run on "
                     "them here."))
        return
    st.subheader(_("Your hard set"))
    show_scores(loaded.items, scores(loaded.items))
