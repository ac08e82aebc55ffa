"""The arguments of a tiny CLI run, shared by the tests: they shrink sizes only (a few
synthetic speakers and 1-s clips, two training batches of one epoch), never a setting under
test."""

TINY_SYNTHETIC = [
    "--data.corpus_options.num_speakers=4",
    "--data.corpus_options.clips_per_speaker=6",
    "--data.corpus_options.duration=1.0",
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
