"""What an epoch's backup of a Distiller costs: its state alone, against all its weights.

Builds a `Distiller` (a `--members`-member `--teacher` ensemble, a
`--student`), trains it one step so its optimizer has state, and times, in
`--repeats` interleaved rounds, the two ways to back it up:

- `state_s`: what `keras_kd.callbacks.BackupAndRestore` writes, the
  student's and the optimizer's variables (`Distiller.backup_variables`);
- `full_weights_s`: `Distiller.save_weights`, the frozen teacher included
  (what the backup wrote before).

Each figure is the median over rounds, with the file sizes. The last line
printed is one JSON object.

    python -m benchmarks.backup
"""

import json
import os
import statistics
import tempfile
import time

import keras
import numpy as np
from absl import app
from absl import flags

import keras_kd

flags.DEFINE_string("teacher", "resnet20", "Teacher member architecture.")
flags.DEFINE_integer("members", 3, "Teacher ensemble size.", lower_bound=1)
flags.DEFINE_string("student", "resnet8", "Student architecture.")
flags.DEFINE_integer("image_size", 8, "Height and width of the grayscale images.", lower_bound=8)
flags.DEFINE_integer("classes", 10, "Number of classes.", lower_bound=2)
flags.DEFINE_integer("repeats", 7, "Interleaved rounds (figures are medians).", lower_bound=1)

FLAGS = flags.FLAGS


def _distiller():
    shape = (FLAGS.image_size, FLAGS.image_size, 1)
    keras.utils.set_random_seed(0)
    members = [keras_kd.models.get(FLAGS.teacher, shape, FLAGS.classes)
               for _ in range(FLAGS.members)]
    teacher = members[0] if FLAGS.members == 1 else keras_kd.Ensemble(members)
    student = keras_kd.models.get(FLAGS.student, shape, FLAGS.classes)
    distiller = keras_kd.Distiller(teacher=teacher, student=student)
    distiller.compile("adam")
    x = np.random.default_rng(0).random((32, *shape), dtype="float32")
    distiller.fit(x, np.zeros(32, "int32"), epochs=1, verbose=0)
    return distiller


def main(argv):
    del argv
    distiller = _distiller()
    folder = tempfile.mkdtemp()
    backup = keras_kd.callbacks.BackupAndRestore(os.path.join(folder, "state"))
    backup.set_model(distiller)
    full_path = os.path.join(folder, "full.weights.h5")
    cases = {
        "state_s": lambda: backup.on_epoch_end(0),
        "full_weights_s": lambda: distiller.save_weights(full_path),
    }
    seconds = {name: [] for name in cases}
    for _ in range(FLAGS.repeats):
        for name, run in cases.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    state_file = os.path.join(folder, "state", os.listdir(os.path.join(folder, "state"))[0])
    result = {name: statistics.median(values) for name, values in seconds.items()}
    result["full_over_state"] = result["full_weights_s"] / result["state_s"]
    result["state_bytes"] = os.path.getsize(state_file)
    result["full_weights_bytes"] = os.path.getsize(full_path)
    result["settings"] = {name: getattr(FLAGS, name) for name in
                          ("teacher", "members", "student", "image_size", "classes", "repeats")}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
