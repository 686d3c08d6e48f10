"""Typed configs of the brain stages (the signature is the config; YAML in configs/brain/)."""

from __future__ import annotations

from dataclasses import dataclass

from breachlab.config import ConfigError, field


@dataclass
class RenderConfig:
    fidelity: str = field("basic", help="basic | high (avatar, timestamps, read receipts, earlier messages)")
    width: int = field(540, help="screenshot width in points (pixels at scale 1)")
    height: int = field(960, help="screenshot height in points (the maximum when fit_height is on)")
    fit_height: bool = field(True, help="crop each screen to the height its content needs (false: every screenshot "
                                        "is width x height, mostly empty for short messages)")
    scale: float = field(1.0, help="pixel scale factor (2.0 = 1080x1920 for the defaults)")
    presentation: str | None = field(None, help="render every message in this frame (whatsapp, sms, social_post, "
                                                "email, plain) instead of its own")
    n_frames: int = field(16, help="frames in the still video for a video encoder (post 3 used 16)")
    fps: float = field(8.0, help="frame rate of the still video")
    materialize_frames: bool = field(False, help="also write the N frame PNGs (else the manifest repeats one PNG)")
    grid_thumb_width: int = field(180, help="thumbnail width in the corpus grid image")

    def __post_init__(self) -> None:
        if self.fidelity not in ("basic", "high"):
            raise ConfigError(f"fidelity must be basic or high, got {self.fidelity!r}")
        if self.width < 200 or self.height < 300 or self.scale <= 0:
            raise ConfigError("width >= 200, height >= 300 and scale > 0 are required")
        if self.n_frames < 1 or self.fps <= 0:
            raise ConfigError("n_frames >= 1 and fps > 0 are required")
        if self.presentation not in (None, "whatsapp", "sms", "social_post", "email", "plain"):
            raise ConfigError(f"unknown presentation {self.presentation!r}")


@dataclass
class SynthConfig:
    seed: int = field(0, help="random seed: same seed, same predictions")
    paths: list[str] = field(default_factory=lambda: ["text", "screenshot"],
                             help="paths to synthesise (text, screenshot)")
    variant_noise: float = field(0.01, help="SD of the smooth per-variant noise "
                                            "(0 = ROI table equals the planted values)")
    pattern_sd: float = field(0.1, help="SD of the shared smooth response patterns")
    atlas: str = field("destrieux", help="atlas whose ROIs receive the planted effects")

    def __post_init__(self) -> None:
        bad = [p for p in self.paths if p not in ("text", "screenshot")]
        if bad or not self.paths:
            raise ConfigError(f"paths must be a non-empty subset of text, screenshot; got {self.paths}")
        if self.variant_noise < 0 or self.pattern_sd <= 0:
            raise ConfigError("variant_noise >= 0 and pattern_sd > 0 are required")


@dataclass
class AnalyzeConfig:
    atlas: str = field("destrieux", help="ROI atlas: destrieux (post 4) or glasser (HCP-MMP1 alternative)")
    rois_file: str | None = field(None, help="ROI definition YAML (default: the shipped brain/data/rois.yaml)")
    window_start_s: float = field(0.0, help="response window start, seconds after the (offset) prediction start")
    window_end_s: float | None = field(None, help="response window end in seconds (None = to the end)")
    n_boot: int = field(2000, help="bootstrap resamples for the 95% CIs over variants")
    n_perm: int = field(10000, help="permutations per ROI test (exact enumeration when fewer splits exist)")
    n_spin: int = field(1000, help="sphere rotations per spin test (0 = report r without p)")
    ci: float = field(0.95, help="confidence level of the bootstrap intervals")
    seed: int = field(0, help="seed for bootstrap, permutations and rotations")
    figures: str = field("all", help="all | minimal (ROI bars, grid, one comparison) | none")

    def __post_init__(self) -> None:
        if self.atlas not in ("destrieux", "glasser"):
            raise ConfigError(f"atlas must be destrieux or glasser, got {self.atlas!r}")
        if self.figures not in ("all", "minimal", "none"):
            raise ConfigError(f"figures must be all, minimal or none, got {self.figures!r}")
        if self.n_boot < 100 or self.n_perm < 100 or self.n_spin < 0:
            raise ConfigError("n_boot and n_perm must be >= 100, n_spin >= 0")
        if not 0 < self.ci < 1:
            raise ConfigError("ci must be between 0 and 1")
        if self.window_end_s is not None and self.window_end_s <= self.window_start_s:
            raise ConfigError("window_end_s must be after window_start_s")


@dataclass
class SmsImportConfig:
    source: str | None = field(None, help="SMSSpamCollection.tsv (default: <data root>/sms_spam/SMSSpamCollection.tsv)")
    n_per_class: int = field(50, help="messages per class (spam, ham); 0 = all")
    seed: int = field(0, help="sampling seed")
    presentation: str = field("sms", help="frame to render them in (whatsapp, sms, social_post, email, plain)")

    def __post_init__(self) -> None:
        from breachlab.brain.corpus import PRESENTATIONS

        if self.n_per_class < 0:
            raise ConfigError("n_per_class must be >= 0 (0 = all)")
        if self.presentation not in PRESENTATIONS:
            raise ConfigError(f"presentation must be one of {', '.join(PRESENTATIONS)}, got {self.presentation!r}")
