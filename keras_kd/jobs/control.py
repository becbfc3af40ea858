"""The control: an independently trained student, trained once and reused by key.

Stanton et al. (2021, section 3.2) read a student's agreement with its
teacher beside that of a student of the same architecture and budget trained
on the labels alone: two models of the same accuracy agree on many examples
whatever they learned, so only the gap above the control is what
distillation bought.
"""

from keras_kd.jobs import folders
from keras_kd.jobs import teachers as teachers_lib


def matching_epochs(student_epochs, student_examples, labeled_examples):
    """The control's epochs over `labeled_examples` that take as many
    examples (so steps, at one batch size) as the student's
    `student_epochs` over `student_examples`: the student's epochs where
    both learn from the same examples.

    >>> matching_epochs(30, 10_000, 200)
    1500
    """
    return max(1, round(student_epochs * student_examples / labeled_examples))


def independent_student(config, data, strategy, verbose="auto", backup_dir=None, epochs=None):
    """The control of a `DistillConfig`: trained, or reused from `controls_dir`.

    It is stored like a one-member teacher ensemble (`<controls_dir>/<arch>-
    <key>/member_0.keras` with its record, see `keras_kd.jobs.folders`),
    keyed by `config.control_spec()`,
    the dataset's content and keras_kd's version, so a distill run of another
    temperature, alpha or policy reuses it.

    `data` is what it learns from (the run's labeled examples), for
    `epochs` (default: the student's).

    Returns:
        `(model, record)`: the control, loaded in `strategy`'s scope, and
        `{"path", "test_accuracy", "reused", "seed", "epochs", "num_train"}`.
    """
    spec = config.control_spec(epochs)
    (record,) = teachers_lib.ensemble_members(
        spec, data, 1, folders.path(config, data.info.slug, "controls"), verbose, config.runtime,
        backup_dir,
    )
    with strategy.scope():
        model = teachers_lib.member_model(record["path"])
    return model, {**record, "seed": spec.seed, "epochs": spec.epochs,
                   "num_train": data.info.num_train}
