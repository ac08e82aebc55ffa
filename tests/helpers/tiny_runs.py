"""The arguments of a tiny CLI run, shared by the tests: they shrink sizes only (a few
synthetic speakers and 1-s clips, two training batches of one epoch), never a setting under
test. The synthetic corpus's size options are spelled here only."""

import lightning.pytorch as pl


def synthetic_corpus(
    speakers: int = 4, clips_per_speaker: int = 6, seconds: float | None = 1.0
) -> list[str]:
    """CLI arguments of a small synthetic corpus: ``speakers`` x ``clips_per_speaker`` clips of
    ``seconds`` s each (None: the config's clip length)."""
    args = [
        f"--data.corpus_options.num_speakers={speakers}",
        f"--data.corpus_options.clips_per_speaker={clips_per_speaker}",
    ]
    if seconds is not None:
        args.append(f"--data.corpus_options.duration={seconds}")
    return args


TINY_SYNTHETIC = [
    *synthetic_corpus(),
    "--data.duration=1.0",
    "--data.num_folds=4",
    "--data.batch_size=4",
]
TINY_TRAINER = [
    "--trainer.max_epochs=1",
    "--trainer.max_time=null",
    "--trainer.limit_train_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def make_trainer(tmp_path, callbacks=(), **settings) -> pl.Trainer:
    """A CPU trainer of one epoch on one device that writes nothing of its own (no logger,
    checkpoint, progress bar or model summary) and skips the sanity check; ``settings``
    override any of it."""
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    defaults.update(settings)
    return pl.Trainer(callbacks=list(callbacks), **defaults)
