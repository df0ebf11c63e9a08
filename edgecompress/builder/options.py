"""`BuildOptions`: everything a build is asked to do, typed, frozen, and round-tripped to JSON; and
`SearchSettings`, the part of it a search takes. Each validates only its own fields: the limits are
`selection.Constraints`', the timing `measure.MeasureSettings`'."""

from __future__ import annotations

import dataclasses
import logging

from edgecompress.lite.latency import DEFAULT_RUNS, DEFAULT_WARMUP
from edgecompress.builder.confirm import DEFAULT_CONFIDENCE
from edgecompress.builder.measure import MeasureSettings
from edgecompress.builder.selection import DEFAULT_MARGIN_SE, Constraints
from edgecompress.builder.targets import DEFAULT_TARGET, strips_names
from edgecompress.report.sizes import DEFAULT_SIZE
from edgecompress.configs import Config, require


logger = logging.getLogger(__name__)



HOLDOUTS = ("test", "training")  # where trials are judged (`holdout.judging_split`)


@dataclasses.dataclass(frozen=True)
class SearchSettings(Config):
    """How one search runs (`search.run.search`): narrowly what it is asked for, not a build's whole options
    (`BuildOptions.search_settings` makes one).

    Args:
        budget_minutes: The loop's wall-time budget. Defaults to 30.
        constraints: The limits it holds (`selection.Constraints`: the accuracy and latency limits, the margin
            and the confidence the selection uses). Defaults to none.
        measure: How every file is timed (`measure.MeasureSettings`). Defaults to 200 runs on 1 thread.
        patience: Proposals without a move of the judged front before it stops (`search.stop`). Defaults to
            None: the space's own.
        workers: Processes on this machine. Defaults to 1.
        storage: The study's storage URL. Defaults to None: a journal file in the build folder.
        artifacts: The artifact store's folder. Defaults to None: beside the study.
        study: The study's name. Defaults to None: `study.STUDY_NAME`.
        holdout: Where trials are judged: "test" (the data's validation split, or half its test split) or
            "training" (a share of the training images the model was trained without). Defaults to "test".
        seed: Seeds the sampler, the splits and every stage. Defaults to 0.
        verbose: Keras' progress bars when 1. Defaults to 1.
        strip_names: Every file without the names no kernel reads (`lite.strip`), on a target that keeps them
            (`targets.strips_names`). Defaults to False.
    """

    budget_minutes: float = 30.0
    constraints: Constraints = Constraints()
    measure: MeasureSettings = MeasureSettings()
    patience: int | None = None
    workers: int = 1
    storage: str | None = None
    artifacts: str | None = None
    study: str | None = None
    holdout: str = "test"
    seed: int = 0
    verbose: int = 1
    strip_names: bool = False

    @property
    def strips_names(self) -> bool:
        """Whether the search's files are made without names: its target's choice or `strip_names`."""
        return strips_names(self.constraints.target, self.strip_names)

    def __post_init__(self):
        require(isinstance(self.budget_minutes, (int, float)) and self.budget_minutes > 0,
                "Received an invalid value for `budget_minutes`, expected a number of minutes > 0. "
                f"Received: budget_minutes={self.budget_minutes!r}")
        require(isinstance(self.workers, int) and self.workers >= 1,
                f"Received an invalid value for `workers`, expected an integer >= 1. Received: workers={self.workers!r}")
        require(self.patience is None or (isinstance(self.patience, int) and self.patience >= 1),
                "Received an invalid value for `patience`, expected an integer >= 1 (proposals without a new point "
                f"on the front). Received: patience={self.patience!r}")
        require(self.holdout in HOLDOUTS, f"Received an invalid value for `holdout`, expected one of "
                f"{list(HOLDOUTS)}. Received: holdout={self.holdout!r}")

    @property
    def margin_se(self) -> float:
        """The judged margin trials keep inside the accuracy limit (`Constraints.margin_se`); 0 without a limit."""
        return self.constraints.margin_se if self.constraints.max_accuracy_drop is not None else 0.0


@dataclasses.dataclass(frozen=True)
class BuildOptions(Config):
    """Everything `invoke build-edge` takes.

    Args:
        model: A `.keras`/`.h5`/SavedModel path; `None` trains the default
            teacher. Defaults to None.
        data: A dataset source (see `data.load_dataset`); `None` is the
            bundled Fashion-MNIST subset. Defaults to None.
        calibration: Folder of calibration images. Defaults to
            `calibration_data/` for the bundled data, and to images drawn
            from the user's training split (written under `out_dir`) otherwise.
        recipe: A recipe JSON file or the name of a shipped recipe
            (`default`, `tfmot-guide`, `lowrank`, `quantize-only`); `None`
            is `default`.
        out_dir: Where artifacts and the report go. Defaults to `build/edge`.
        epochs: Teacher training epochs when no model is given. Defaults to 8.
        seed: Seeds training and data splits. Defaults to 0.
        threads: Interpreter threads for evaluation and latency. Defaults to 1.
        runs: Timed invokes per artifact for host latency. Defaults to 200.
        warmup: Warm-up invokes before them. Defaults to 20.
        scale: Pixel scaling for a user model: `auto` (read from the model's
            preprocessing layers, confirmed by measuring; see
            `pixelscale.choose_scale`), `unit`, `symmetric` or `raw`.
            Defaults to `auto`.
        safe_mode: Refuse Lambda layers when loading a model. Defaults to True.
        verbose: Keras progress bars (1) or silence (0). Defaults to 1.
        strategy: `tf.distribute` strategy for training the teacher (stages
            take theirs from the recipe). Defaults to `"default"`.
        cache: Reuse stages whose inputs did not change, from
            `<out_dir>/.cache`. Defaults to True.
        search: Instead of one recipe, search the recipes of this search
            space (a shipped name such as `default`, or a JSON file; see
            `edgecompress.search.run`) and keep the Pareto front. Defaults to None.
        budget_minutes: Time budget of a search or the closed loop, counted from
            the build's start (loading the model included). Defaults to 30.
        workers: Search worker processes on this machine, sharing the study
            and the cores. Defaults to 1 (trials run in this process).
        storage: The study's storage: an RDB URL other machines' workers can
            reach (`postgresql://user:pw@host/db`), or a journal file. Defaults
            to None: `<out_dir>/.edgecompress/study/study.journal`.
        artifacts: Folder of the study's artifact store (where workers put
            their files; one all machines mount). Defaults to None:
            `<out_dir>/.edgecompress/study/artifacts`.
        study: Study name in the storage. Defaults to None:
            `search.study.STUDY_NAME`.
        max_accuracy_drop: Quality gate (see `selection.Constraints`): most points below the baseline. The
            artifact meeting every limit is written as `selected.tflite`; when int8 loses too much, selective
            int8 (`quantize.debugger.find_float_layers`) is tried first. Defaults to None.
        max_file_kb: Quality gate: largest file in KiB. Defaults to None.
        max_latency_ms: Quality gate: slowest host p50 in ms. Defaults to None.
        max_ram_kb: Quality gate: largest TensorFlow Lite Micro arena in KiB. Defaults to None.
        size: What "smallest" means for the selection and a search's objective (`report.sizes`): `"file"`
            bytes (what every device holds) or `"gzip"` bytes (the download). Defaults to "file".
        target: What the build ships for (`builder.targets`): `"cpu"` (LiteRT), or `"mcu"` (TensorFlow Lite
            Micro: full-integer files it runs, by file bytes; the model's int8 file is tried on TFLM before
            training). Defaults to "cpu".
        strip_names: Make every file without the names no kernel reads (tensor names, signature defs;
            `lite.strip`): fewer bytes on the device, no signature runner. `mcu` always does. Defaults to False.
        max_metric_drop: The accuracy limit in the metric's own units (0.01 = 0.01 of ROC-AUC or R², or one
            point of top-1): sets `max_accuracy_drop` to 100 times it. Give one of the two. Defaults to None.
        margin_se: With `selection="judged"`: how many paired standard errors of its drop a search's file must
            keep inside `max_accuracy_drop` on the judging images; 0 holds the limit as measured. A search's
            sampler also treats files outside this margin as infeasible. Defaults to `DEFAULT_MARGIN_SE` (1).
        selection: How a search's accuracy limit is held (`selection.Constraints`): `"confirmed"` (certified on
            a confirmation split the search never scored, `builder.confirm`) or `"judged"` (the rule before
            it). Defaults to `"confirmed"`.
        confidence: One-sided confidence of a confirmation. Defaults to `confirm.DEFAULT_CONFIDENCE` (0.95).
        disjoint_groups: Refuse data whose groups (`data.groups`) appear in both the training and the test
            split. Defaults to False.
        patience: A search stops when this many proposals in a row (duplicates included) have not moved its
            judged front. Defaults to None: the space's own (`SearchSpace.patience`).
        task: What a user's model is for (`lite.tasks`: `classification`, `anomaly`), which sets its metric
            (top-1, ROC-AUC); `max_accuracy_drop` is in points of it (0.01 of ROC-AUC per point). Defaults
            to None: what the model's shapes say (`keras_io.model_task`).
        output: For a model of several outputs, the name of the one to build, measure and ship (the file
            computes it alone; the data's labels are its). Defaults to None: the first
            (`keras_io.one_output`).
    """

    model: str | None = None
    data: str | None = None
    calibration: str | None = None
    recipe: str | None = None
    out_dir: str = "build/edge"
    epochs: int = 8
    seed: int = 0
    threads: int = 1
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    scale: str = "auto"
    safe_mode: bool = True
    verbose: int = 1
    strategy: str = "default"
    cache: bool = True
    search: str | None = None
    budget_minutes: float = 30.0
    workers: int = 1
    storage: str | None = None
    artifacts: str | None = None
    study: str | None = None
    max_accuracy_drop: float | None = None
    max_file_kb: float | None = None
    max_latency_ms: float | None = None
    max_ram_kb: float | None = None
    size: str = DEFAULT_SIZE
    target: str = DEFAULT_TARGET
    strip_names: bool = False
    task: str | None = None
    output: str | None = None
    max_metric_drop: float | None = None
    margin_se: float = DEFAULT_MARGIN_SE
    selection: str = "confirmed"
    confidence: float = DEFAULT_CONFIDENCE
    disjoint_groups: bool = False
    patience: int | None = None

    def __post_init__(self):
        require(self.search or (self.workers == 1 and not self.storage and not self.artifacts and not self.study),
                 "`workers`, `storage`, `artifacts` and `study` belong to a search: add --search, or drop them.")
        from edgecompress.models.user import check_scale_name

        check_scale_name(self.scale)
        if self.max_metric_drop is not None:
            require(isinstance(self.max_metric_drop, (int, float)) and self.max_metric_drop >= 0,
                    "Received an invalid value for `max_metric_drop`, expected a number >= 0 in the metric's units "
                    f"(0.01 of ROC-AUC). Received: max_metric_drop={self.max_metric_drop!r}")
            points = 100.0 * self.max_metric_drop
            require(self.max_accuracy_drop is None or abs(self.max_accuracy_drop - points) < 1e-9,
                    f"Received both `max_accuracy_drop`={self.max_accuracy_drop!r} (points) and `max_metric_drop`="
                    f"{self.max_metric_drop!r} (the metric's units, {points:g} points): give one of them.")
            object.__setattr__(self, "max_accuracy_drop", points)
        if self.task is not None:
            from edgecompress.lite.tasks import task

            task(self.task)
        self.search_settings()  # the limits, the timing and the search's own fields: validated where they live

    @property
    def constraints(self) -> Constraints:
        """The limits a build holds (`selection.Constraints`)."""
        return Constraints(self.max_accuracy_drop, self.max_file_kb, self.max_latency_ms, self.max_ram_kb,
                           size=self.size, margin_se=self.margin_se, selection=self.selection,
                           confidence=self.confidence, target=self.target)

    def search_settings(self, **changes):
        """What a search of this build is asked for (`SearchSettings`), with `changes`."""
        return SearchSettings(**{"budget_minutes": self.budget_minutes, "constraints": self.constraints,
                                 "measure": self.measure, "patience": self.patience, "workers": self.workers,
                                 "storage": self.storage, "artifacts": self.artifacts, "study": self.study,
                                 "seed": self.seed, "verbose": self.verbose, "strip_names": self.strip_names,
                                 **changes})

    @property
    def measure(self) -> MeasureSettings:
        """How every file is timed (`builder.measure.MeasureSettings`): threads, runs, warm-up."""
        return MeasureSettings(self.threads, self.runs, self.warmup)
