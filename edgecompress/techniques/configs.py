"""The configs of the training-time stages: typed, frozen, validated, JSON round-trip.

Configs only: no TensorFlow and no implementation, so a recipe is parsed
without either. Each implementation module imports its config from here;
`registry` ties a config to its implementation by name.
"""

from __future__ import annotations

import dataclasses
import warnings

from edgecompress.configs import LR_SCHEDULES, Config, TrainConfig, require
from edgecompress.models.distribute import STRATEGIES
from edgecompress.errors import EdgeCompressError


class _StageConfig(Config):
    """Base of stage configs: the recipe name (`STAGE`) and the levers it pulls."""

    STAGE = ""

    def lever(self) -> tuple[str, str] | None:
        """(kind, what) this stage pulls: `"structured"` (fewer channels or ranks: less work, so faster and
        smaller), `"unstructured"` (zeros or shared values: a smaller download, the same dense work on a
        CPU), or None."""
        return None

    def cache_parts(self) -> tuple:
        """What, beyond its fields, decides the model this stage makes, for its cache key
        (`recipes.runner.stage_keys`): a rule of the code, so that a model cached under an older rule is never
        reused for the new one. Empty for most stages."""
        return ()

    def training(self, seed: int, **changes) -> TrainConfig:
        """This stage's epochs as the one trainer runs them (`models.training.train`): its own epochs, batch,
        rate, schedule, early stop, mixup and strategy where it has them, the shared held-out fraction, and
        `changes` (a fine-tuning's own epochs)."""
        own = {f: getattr(self, f) for f in ("epochs", "batch_size", "learning_rate", "lr_schedule", "patience",
                                             "mixup", "strategy") if hasattr(self, f)}
        return TrainConfig(**{**own, "seed": seed, **changes})


INITS = ("auto", "teacher", "random")
MAX_EPOCHS_FACTOR = 4  # DistillConfig.min_steps runs at most this many times its `epochs`
HARD_SWISH = ("keep", "relu")  # DistillConfig.hard_swish: what a student computes where its teacher has hard-swish


@dataclasses.dataclass(frozen=True)
class DistillConfig(_StageConfig):
    """Distill the teacher into a smaller student.

    Args:
        width: Width multiplier applied to the teacher's architecture (every
            Conv2D's filters and Dense's units but the output layer).
            Defaults to 0.5.
        student: Path to a student model file to use instead. Defaults to None.
        temperature: Softening temperature T. Defaults to 2.0 (on full
            Fashion-MNIST with a teacher-initialized w0.5 student: 92.35% at
            T=2, alpha=0.5 against 92.16% at T=4, alpha=0.1).
        alpha: Weight of the hard-label loss; 1 - alpha goes to the teacher.
            Defaults to 0.5.
        epochs: Defaults to 10; with `patience`, the most epochs.
        min_steps: At least this many optimizer steps: where `epochs` over
            the training rows are fewer, more epochs run, up to
            `MAX_EPOCHS_FACTOR` times `epochs` (`epochs_for`). With a small
            training set a fixed count of epochs ends the schedule while the
            student's loss still falls; distillation wants long schedules
            (Beyer et al. 2022, below). Defaults to None: `epochs` as given.
        patience: Stop when the student's top-1 on the 10% of the training
            images it does not fit on has not improved for this many epochs,
            and keep its best epoch's weights (Keras' `EarlyStopping` with
            `restore_best_weights`). Defaults to None: all `epochs`.
        batch_size: Defaults to 64.
        learning_rate: Adam learning rate. Defaults to 1e-3.
        lr_schedule: `"constant"`, or `"cosine"`: the rate decays from
            `learning_rate` to 0 over `epochs` (Keras' `CosineDecay`), so the
            last epochs settle where a constant rate keeps the student's
            held-out top-1 jumping by points from one epoch to the next.
            Defaults to `"constant"`.
        mixup: Mixup's Beta(a, a) parameter `a` for the training batches, or
            0 for none. Each training example is blended with another of the
            batch, `lam * x + (1 - lam) * x'` with `lam ~ Beta(a, a)`: the
            student matches the teacher's outputs on the blend and learns
            both labels by `lam` (for a classifier; a model of values,
            several labels or several outputs trains unblended). A student
            sees new inputs every epoch where a small training set has it
            learn the images by heart (Beyer et al. 2022, "Knowledge
            distillation: a good teacher is patient and consistent").
            Defaults to 0.
        student_dropout: Dropout rate for the width-scaled student's Dropout
            layers (a narrow student needs less, and the soft targets already
            regularize). Defaults to None: the teacher's rates.
        bn_momentum: The student's BatchNormalization momentum, where the
            teacher's is higher: keras.applications builds 0.999 (made for
            fine-tuning ImageNet weights), whose moving statistics trail a
            student trained for a few hundred steps (a MobileNetV3Small
            teacher at 0.999: its width-0.5 student 12.50% on held-out
            images, at chance; capped at 0.99, 87.12%, the teacher 87.50%;
            `scripts/distill_experiments.py`). Defaults to 0.99; None keeps
            the teacher's.
        init: How the student starts. `"teacher"`: the width-scaled
            student inherits the teacher's most important channels (largest
            L1 norm per filter or unit; see `inherit_weights`), as DistilBERT
            starts from its teacher's layers. `"random"`: fresh weights.
            `"auto"`: `"teacher"` for a width-scaled student, `"random"` for
            a supplied `student`. Defaults to `"auto"`.
        baseline: Also train the student from scratch with the same budget,
            to report what distillation bought. Defaults to True (the
            `invoke distill` task); the bundled recipes and search spaces
            set it false, as it trains the student twice more.
        hard_swish: What the student computes where the teacher computes
            hard-swish (`x * relu6(x + 3) / 6`, a MobileNetV3's activation):
            `"keep"`, or `"relu"`, a lever for speed, not size: in an int8
            file the ReLU fuses into the convolution before it, where
            hard-swish is three elementwise ops (MUL, ADD, MUL) after it. On
            the `mnv3-shapes` example's 0.75-wide int8 student, 90 nodes
            instead of 144; on a 2-core AMD EPYC (LiteRT 2.3, 1 thread),
            0.040 ms p50 against 0.058 in one build's timing
            and 0.054-0.058 against 0.060-0.079 re-timed, for 1-3 points of
            top-1 (README "Latency"). The student learns the new activation
            from the teacher like any other difference. Defaults to
            `"keep"`.
        strategy: One of `distribute.STRATEGIES`. Defaults to `"default"`.
    """

    STAGE = "distill"

    def lever(self):
        parts = [f"width {self.width:g}"] if self.width < 1 else []
        if self.hard_swish != "keep":
            parts.append(f"{self.hard_swish} for hard-swish")
        return ("structured", ", ".join(parts)) if parts else None

    def epochs_for(self, rows: int) -> int:
        """The epochs to run on `rows` training rows: `epochs`, or more where they are fewer than `min_steps`
        optimizer steps, at most `MAX_EPOCHS_FACTOR` times `epochs`.

        >>> DistillConfig(epochs=30, min_steps=3000, batch_size=64).epochs_for(1728)  # 27 steps an epoch
        112
        """
        if not self.min_steps:
            return self.epochs
        per_epoch = max(1, -(-int(rows) // self.batch_size))
        return min(max(self.epochs, -(-self.min_steps // per_epoch)), MAX_EPOCHS_FACTOR * self.epochs)

    def cache_parts(self):
        if self.student is not None or self.width >= 1:
            return ()
        from edgecompress.models.channels import MIN_CHANNELS  # numpy only

        return ({"min_channels": MIN_CHANNELS},)

    width: float = 0.5
    student: str | None = None
    temperature: float = 2.0
    alpha: float = 0.5
    epochs: int = 10
    min_steps: int | None = None
    patience: int | None = None
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    mixup: float = 0.0
    student_dropout: float | None = None
    bn_momentum: float | None = 0.99
    init: str = "auto"
    baseline: bool = True
    hard_swish: str = "keep"
    strategy: str = "default"

    def __post_init__(self):
        require(self.width > 0, f"Received an invalid value for `width`, expected a positive number. Received: width={self.width!r}")
        require(self.temperature > 0,
                 f"Received an invalid value for `temperature`, expected a positive number. Received: temperature={self.temperature!r}")
        require(0 <= self.alpha <= 1, f"Received an invalid value for `alpha`, expected a number in [0, 1]. Received: alpha={self.alpha!r}")
        require(isinstance(self.epochs, int) and self.epochs >= 1,
                 f"Received an invalid value for `epochs`, expected an integer >= 1. Received: epochs={self.epochs!r}")
        require(self.patience is None or (isinstance(self.patience, int) and self.patience >= 1),
                 f"Received an invalid value for `patience`, expected an integer >= 1 or null. "
                 f"Received: patience={self.patience!r}")
        require(self.min_steps is None or (isinstance(self.min_steps, int) and not isinstance(self.min_steps, bool)
                                           and self.min_steps >= 1),
                 f"Received an invalid value for `min_steps`, expected an integer >= 1 or null. "
                 f"Received: min_steps={self.min_steps!r}")
        require(self.bn_momentum is None or 0 < self.bn_momentum < 1,
                 "Received an invalid value for `bn_momentum`, expected a number in (0, 1) or null. "
                 f"Received: bn_momentum={self.bn_momentum!r}")
        require(self.student_dropout is None or 0 <= self.student_dropout < 1,
                 "Received an invalid value for `student_dropout`, expected a number in [0, 1) or null. "
                 f"Received: student_dropout={self.student_dropout!r}")
        require(self.hard_swish in HARD_SWISH,
                 f"Received an invalid value for `hard_swish`, expected one of {list(HARD_SWISH)}. "
                 f"Received: hard_swish={self.hard_swish!r}")
        require(isinstance(self.mixup, (int, float)) and not isinstance(self.mixup, bool) and self.mixup >= 0,
                 f"Received an invalid value for `mixup`, expected a number >= 0 (0: none). Received: mixup={self.mixup!r}")
        require(self.lr_schedule in LR_SCHEDULES,
                 f"Received an invalid value for `lr_schedule`, expected one of {list(LR_SCHEDULES)}. "
                 f"Received: lr_schedule={self.lr_schedule!r}")
        require(self.init in INITS,
                 f"Received an invalid value for `init`, expected one of {list(INITS)}. Received: init={self.init!r}")
        require(not (self.init == "teacher" and self.student),
                 f"Received init='teacher' with a supplied student ({self.student!r}): only a width-scaled student "
                 "has the teacher's layers to inherit. Use init='random' or 'auto', or drop `student`.")
        require(self.strategy in STRATEGIES,
                 f"Received an invalid value for `strategy`, expected one of {list(STRATEGIES)}. Received: strategy={self.strategy!r}")
        if self.width > 1 and self.student is None:
            warnings.warn(f"DistillConfig(width={self.width}) makes a student wider than its teacher; "
                          "distillation usually targets a smaller model.", stacklevel=3)



@dataclasses.dataclass(frozen=True)
class FactorizeConfig(_StageConfig):
    """Factorize Dense and Conv2D layers by truncated SVD.

    Args:
        energy: Keep the smallest rank whose singular values hold this share
            of the squared total, in (0, 1]. Defaults to 0.9.
        ratio: Instead of `energy`, pick the rank so the factorized layer has
            at most this share of the original's parameters. Defaults to None.
        ranks: Fixed ranks for named layers, e.g. `{"fc1": 16}`; these win
            over `energy` and `ratio`. Defaults to `{}`.
        layers: Only these layers (default: every Dense and Conv2D but the
            output layer).
        min_params: Leave layers with fewer parameters alone. Defaults to 1000.
        finetune_epochs: Epochs of fine-tuning afterwards. Defaults to 2.
        learning_rate: Adam learning rate for the fine-tune. Defaults to 5e-4.
        distill: Fine-tune against the build's teacher's soft targets as well
            as the labels (temperature 2, alpha 0.5, as `distill`): what the
            truncated ranks lose, the teacher teaches back. Defaults to False.
        strategy: One of `distribute.STRATEGIES`. Defaults to `"default"`.
    """

    STAGE = "factorize"

    def lever(self):
        return "structured", "factorized" + (f" (energy {self.energy:g})" if not self.ranks else " (fixed ranks)")

    energy: float = 0.9
    ratio: float | None = None
    ranks: dict = dataclasses.field(default_factory=dict)
    layers: tuple | None = None
    min_params: int = 1000
    finetune_epochs: int = 2
    learning_rate: float = 5e-4
    distill: bool = False
    strategy: str = "default"

    def __post_init__(self):
        require(0 < self.energy <= 1, f"Received an invalid value for `energy`, expected a number in (0, 1]. Received: energy={self.energy!r}")
        require(self.ratio is None or 0 < self.ratio < 1,
                 f"Received an invalid value for `ratio`, expected a number in (0, 1) or null. Received: ratio={self.ratio!r}")
        require(isinstance(self.ranks, dict) and all(isinstance(v, int) and v >= 1 for v in self.ranks.values()),
                 f"Received an invalid value for `ranks`, expected a mapping of layer name to a positive integer. Received: ranks={self.ranks!r}")
        require(isinstance(self.finetune_epochs, int) and self.finetune_epochs >= 0,
                 f"Received an invalid value for `finetune_epochs`, expected an integer >= 0. Received: finetune_epochs={self.finetune_epochs!r}")
        require(self.strategy in STRATEGIES,
                 f"Received an invalid value for `strategy`, expected one of {list(STRATEGIES)}. Received: strategy={self.strategy!r}")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))

    def __hash__(self):
        return hash(self.to_json())



@dataclasses.dataclass(frozen=True)
class PruneConfig(_StageConfig):
    """Prune the model's weights to a target sparsity while fine-tuning.

    Args:
        final_sparsity: Share of weights set to zero at the end, in [0, 1).
            Defaults to 0.8.
        initial_sparsity: Sparsity at the first pruning step (polynomial
            schedule only), in [0, final_sparsity]. Defaults to 0.5.
        schedule: `"polynomial"` (PolynomialDecay from initial to final) or
            `"constant"` (ConstantSparsity at final). Defaults to
            `"polynomial"`.
        epochs: Fine-tuning epochs while pruning. Defaults to 3.
        end_fraction: Share of the steps over which sparsity ramps up; the
            rest fine-tunes at the final sparsity. Defaults to 0.7.
        m_by_n: Structured sparsity such as `"2:4"` (2 zeros in every 4
            weights). Defaults to None.
        policy: `"xnnpack"` to prune only what XNNPACK's sparse inference can
            use (tfmot's `PruneForLatencyOnXNNPack`). Defaults to None.
        qat: Pruning-preserving quantization-aware training after pruning.
            Defaults to False.
        qat_epochs: Epochs of that training. Defaults to 1.
        distill: Fine-tune against the build's teacher's soft targets as well
            as the labels (temperature 2, alpha 0.5, as `distill`), instead of
            the labels alone: what the pruned weights lose, the teacher
            teaches back. Defaults to False.
        on_unsupported: `"skip"` layers tfmot cannot prune (named in the log)
            or `"error"`. Defaults to `"skip"`.
        min_params: Leave layers with fewer weights dense: pruning them saves
            little and costs accuracy (a first 3x3 convolution has a few
            hundred). Defaults to 1000.
        learning_rate: Adam learning rate while pruning. Defaults to 5e-4.
        batch_size: Defaults to 64.
        strategy: One of `distribute.STRATEGIES`. Defaults to `"default"`.
    """

    STAGE = "prune"

    def lever(self):
        return "unstructured", f"{100 * self.final_sparsity:.0f}% sparse"

    final_sparsity: float = 0.8
    initial_sparsity: float = 0.5
    schedule: str = "polynomial"
    epochs: int = 3
    end_fraction: float = 0.7
    m_by_n: str | None = None
    policy: str | None = None
    qat: bool = False
    qat_epochs: int = 1
    distill: bool = False
    on_unsupported: str = "skip"
    min_params: int = 1000
    learning_rate: float = 5e-4
    batch_size: int = 64
    strategy: str = "default"

    def __post_init__(self):
        require(0 <= self.final_sparsity < 1,
                 "Received an invalid value for `final_sparsity`, expected a number in [0, 1). "
                 f"Received: final_sparsity={self.final_sparsity!r}")
        require(0 <= self.initial_sparsity <= self.final_sparsity,
                 "Received an invalid value for `initial_sparsity`, expected a number in [0, final_sparsity]. "
                 f"Received: initial_sparsity={self.initial_sparsity!r} (final_sparsity={self.final_sparsity!r})")
        require(self.schedule in ("polynomial", "constant"),
                 f"Received an invalid value for `schedule`, expected 'polynomial' or 'constant'. Received: schedule={self.schedule!r}")
        require(isinstance(self.epochs, int) and self.epochs >= 1,
                 f"Received an invalid value for `epochs`, expected an integer >= 1. Received: epochs={self.epochs!r}")
        require(0 < self.end_fraction <= 1,
                 f"Received an invalid value for `end_fraction`, expected a number in (0, 1]. Received: end_fraction={self.end_fraction!r}")
        if self.m_by_n is not None:
            self.m_by_n_tuple()
        require(self.policy in (None, "xnnpack"),
                 f"Received an invalid value for `policy`, expected null or 'xnnpack'. Received: policy={self.policy!r}")
        require(self.on_unsupported in ("skip", "error"),
                 f"Received an invalid value for `on_unsupported`, expected 'skip' or 'error'. Received: on_unsupported={self.on_unsupported!r}")
        require(self.strategy in STRATEGIES,
                 f"Received an invalid value for `strategy`, expected one of {list(STRATEGIES)}. Received: strategy={self.strategy!r}")

    def m_by_n_tuple(self):
        try:
            m, n = (int(v) for v in str(self.m_by_n).split(":"))
        except ValueError:
            m = n = 0
        if not 0 < m < n:
            raise EdgeCompressError(
                f"Received an invalid value for `m_by_n`, expected 'M:N' with 0 < M < N such as '2:4'. "
                f"Received: m_by_n={self.m_by_n!r}"
            )
        return (m, n)

    @property
    def target_sparsity(self) -> float:
        if self.m_by_n:
            m, n = self.m_by_n_tuple()
            return m / n
        return self.final_sparsity



CENTROID_INITS = ("kmeans++", "linear", "density", "random")


@dataclasses.dataclass(frozen=True)
class ClusterConfig(_StageConfig):
    """Cluster each layer's weights into a few shared values while fine-tuning (tfmot weight clustering).

    Args:
        number_of_clusters: Distinct values per kernel (per output channel
            once int8's per-channel scales apply). Defaults to 16.
        init: Centroid initialisation: "kmeans++", "linear" (evenly spaced
            between the min and max weight), "density" or "random".
            Defaults to "kmeans++".
        epochs: Fine-tuning epochs with the clusters (0: cluster only).
            Defaults to 2.
        preserve_sparsity: Keep zeros at zero (for a pruned model), `"auto"`
            when at least 30% of the weights of the kernels it clusters are zero
            (those of at least `min_params`). Defaults to "auto".
        qat: Cluster-preserving quantization-aware training afterwards (CQAT;
            PCQAT when sparsity is preserved too). Defaults to False.
        qat_epochs: Epochs of that training. Defaults to 1.
        min_params: Leave layers with fewer weights unclustered (a first 3x3
            convolution has a few hundred). Defaults to 1000. DepthwiseConv2D
            layers are never clustered (tfmot 0.8 strips them back unclustered).
        learning_rate: Adam learning rate while fine-tuning. Defaults to 1e-4.
        batch_size: Defaults to 64.
        strategy: One of `distribute.STRATEGIES`. Defaults to `"default"`.
    """

    STAGE = "cluster"

    def lever(self):
        return "unstructured", f"{self.number_of_clusters} clusters"

    number_of_clusters: int = 16
    init: str = "kmeans++"
    epochs: int = 2
    preserve_sparsity: bool | str = "auto"
    qat: bool = False
    qat_epochs: int = 1
    min_params: int = 1000
    learning_rate: float = 1e-4
    batch_size: int = 64
    strategy: str = "default"

    def __post_init__(self):
        require(isinstance(self.number_of_clusters, int) and not isinstance(self.number_of_clusters, bool)
                 and 2 <= self.number_of_clusters <= 256,
                 "Received an invalid value for `number_of_clusters`, expected an integer in [2, 256]. "
                 f"Received: number_of_clusters={self.number_of_clusters!r}")
        require(self.init in CENTROID_INITS, f"Received an invalid value for `init`, expected one of "
                                              f"{list(CENTROID_INITS)}. Received: init={self.init!r}")
        require(isinstance(self.epochs, int) and self.epochs >= 0,
                 f"Received an invalid value for `epochs`, expected an integer >= 0. Received: epochs={self.epochs!r}")
        require(self.preserve_sparsity in (True, False, "auto"), "Received an invalid value for "
                 f"`preserve_sparsity`, expected true, false or 'auto'. Received: preserve_sparsity={self.preserve_sparsity!r}")
        require(isinstance(self.qat_epochs, int) and self.qat_epochs >= 1,
                 f"Received an invalid value for `qat_epochs`, expected an integer >= 1. Received: qat_epochs={self.qat_epochs!r}")
        require(self.strategy in STRATEGIES,
                 f"Received an invalid value for `strategy`, expected one of {list(STRATEGIES)}. Received: strategy={self.strategy!r}")
