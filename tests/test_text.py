"""Text classification: token-id datasets, text models and stages, students that read text."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd import data as data_lib
from tests.test_launch import ROOT

WORDS = ("great", "fine", "lovely", "awful", "dull", "poor")


def _reviews(count, seed):
    """Short reviews whose label is whether they hold more positive words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(count):
        words = list(rng.choice(WORDS + ("the", "film", "plot", "was"), size=8))
        positive = sum(word in WORDS[:3] for word in words)
        negative = sum(word in WORDS[3:] for word in words)
        texts.append(" ".join(words))
        labels.append(int(positive > negative))
    return np.array(texts), np.array(labels)


def test_the_vocabulary_comes_from_the_training_texts_only():
    data = data_lib.load_texts(["a good film", "a good plot"], [1, 0], ["a bad film"], [0],
                               sequence_length=5)
    assert data.info.kind == "tokens" and data.info.vocabulary_size == len(data.vocabulary) == 6
    assert "bad" not in data.vocabulary
    (test_ids, _), = data.test.batch(1).as_numpy_iterator()
    assert test_ids.tolist() == [[data.vocabulary.index("a"), 1, data.vocabulary.index("film"),
                                  0, 0]]  # "bad" is out of vocabulary, the rest padding
    assert data.info.settings == {"vocabulary_size": 20000, "sequence_length": 5}


def test_an_npz_of_strings_is_a_text_dataset_with_its_settings_in_its_name(tmp_path):
    x_train, y_train = _reviews(40, 0)
    x_test, y_test = _reviews(10, 1)
    path = tmp_path / "reviews.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = data_lib.load(f"npz:{path}:sequence_length=6,vocabulary_size=5")
    assert data.info.input_shape == (6,) and data.info.vocabulary_size == 5
    x, y = next(iter(data_lib.batched(data.train, 40)))
    assert x.dtype == tf.int32 and x.shape == (40, 6) and int(tf.reduce_max(x)) < 5
    other = data_lib.load(f"npz:{path}:sequence_length=7")
    assert other.digest != data.digest and other.info.slug != data.info.slug
    assert data_lib.load(f"npz:{path}:sequence_length=6,vocabulary_size=5").digest == data.digest


@pytest.mark.parametrize("name, message", [
    ("npz:{path}:vocab=10", r"unknown text setting 'vocab'; expected \['sequence_length', "
                            r"'vocabulary_size'\]"),
    ("npz:{path}:sequence_length=long", "sequence_length must be an integer; got 'long'"),
    ("npz:{path}:vocabulary_size=2", "vocabulary_size must be >= 3"),
    ("digits_npz", "settings 'sequence_length=8' apply to text datasets only"),
])
def test_bad_text_settings_are_named(tmp_path, name, message):
    path = tmp_path / "reviews.npz"
    x, y = _reviews(10, 0)
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    if name == "digits_npz":
        path = tmp_path / "numbers.npz"
        np.savez(path, x_train=np.zeros((4, 3)), y_train=[0, 1, 0, 1], x_test=np.zeros((2, 3)),
                 y_test=[0, 1])
        name = "npz:{path}:sequence_length=8"
    with pytest.raises(data_lib.DatasetError, match=message):
        data_lib.load(name.format(path=path))


def test_stages_for_real_values_are_refused_on_tokens_and_token_mask_masks_words():
    policy = data_lib.Policy.parse("crop_flip")
    with pytest.raises(ValueError, match="stage 'crop_flip' applies to images; the inputs are "
                                         r"tokens of shape \(8,\)"):
        policy.validate((8,), "tokens")
    for name in ("noise", "mixup", "gan", "ood"):
        with pytest.raises(ValueError, match=f"stage '{name}' applies to .*the inputs are tokens"):
            data_lib.Policy.parse(name).validate((8,), "tokens")
    with pytest.raises(ValueError, match="stage 'token_mask' applies to tokens; the inputs are "
                                         "features"):
        data_lib.Policy.parse("token_mask").validate((8,))

    with pytest.raises(ValueError, match=r"mask_rate must be in \[0, 1\); got 1.0"):
        data_lib.Policy.parse("token_mask", mask_rate=1.0)

    (transform,) = data_lib.Policy.parse("token_mask", mask_rate=0.5).augmentation((200,), "tokens")
    tokens = tf.constant([[5] * 150 + [0] * 50] * 4, tf.int32)
    masked = transform({"x": tokens, "y": tf.zeros([4], tf.int32)}, tf.constant([1, 2], tf.int64))
    masked = masked["x"].numpy()
    assert set(np.unique(masked[:, :150])) == {1, 5} and (masked[:, 150:] == 0).all()
    assert 0.4 < (masked[:, :150] == 1).mean() < 0.6


@pytest.mark.parametrize("arch, features", [("lstm", 16), ("bilstm", 32)])
def test_text_models_return_logits_and_features(arch, features):
    data = data_lib.load_texts(*_reviews(20, 0), *_reviews(5, 1), sequence_length=8)
    model = keras_kd.models.for_data(arch, data.info, units=16, embedding_dim=8)
    x, _ = next(iter(data_lib.batched(data.train, 4)))
    assert model(x).shape == (4, 2)
    assert keras_kd.models.penultimate(model)(x).shape == (4, features)
    with pytest.raises(ValueError, match="lstm needs vocabulary_size"):
        keras_kd.models.get("lstm", (8,), 2)
    with pytest.raises(ValueError, match=r"reads token ids of shape \(sequence_length,\); got "
                                         r"input shape \(8, 8, 1\)"):
        keras_kd.models.get("lstm", (8, 8, 1), 2, vocabulary_size=10)


@pytest.mark.slow
def test_an_lstm_ensemble_distills_into_an_lstm_with_plain_fit():
    import keras

    data = data_lib.load_texts(*_reviews(512, 0), *_reviews(256, 1), sequence_length=8)
    members = []
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        member = keras_kd.models.for_data("lstm", data.info, units=16, embedding_dim=16)
        member.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        member.fit(data_lib.batched(data.train, 32, shuffle=True, seed=seed), epochs=4,
                   verbose=0)
        members.append(member)
    teacher = keras_kd.Ensemble(members)
    keras.utils.set_random_seed(7)
    student = keras_kd.models.for_data("lstm", data.info, units=16, embedding_dim=16)
    distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.0, temperature=1.0)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01))
    test = data_lib.batched(data.test, 128)

    def agreement():
        return keras_kd.evaluation.fidelity_report(teacher, student, {"test": test})["test"][
            "agreement"]

    before = agreement()
    distiller.fit(data_lib.batched(data.train, 32, shuffle=True, seed=0), epochs=6, verbose=0)
    after = agreement()
    assert after > before + 0.1 and after > 0.85, (before, after)


MOCK_RUN = """
import sys
import tensorflow_datasets as tfds
from absl import app
from launch import {app}
with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    app.run({app}.main, argv=["{app}", *sys.argv[1:]],
            flags_parser=getattr({app}, "parse_flags", app.parse_flags_with_usage))
"""


def _mock_app(app, *flags):
    return subprocess.run(
        [sys.executable, "-c", MOCK_RUN.format(app=app), *flags], cwd=ROOT, capture_output=True,
        text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.mark.slow
def test_distill_on_imdb_reviews_exports_a_student_that_reads_text(tmp_path):
    run_dir = tmp_path / "run"
    _mock_app("distill", "--dataset=tfds:imdb_reviews:sequence_length=16,vocabulary_size=50",
              "--teacher_arch=lstm", "--student_arch=bilstm", "--members=2", "--epochs=1",
              "--teacher_epochs=1", "--batch_size=16", "--policy=token_mask", "--verbose=0",
              f"--saved_models_dir={tmp_path / 'saved'}", f"--output_dir={run_dir}")
    with open(run_dir / "report.json") as f:
        report = json.load(f)
    assert report["dataset"]["vocabulary_size"] == 50 and report["dataset"]["input_shape"] == [16]
    assert report["config"]["policy_settings"] == {"policy": "token_mask", "mask_rate": 0.15}
    assert 0 <= report["splits"]["test"]["agreement"] <= 1
    served = tf.saved_model.load(report["artifacts"]["saved_model"])
    logits = served.serve(tf.constant(["a fine film", "dull"]))
    assert logits.shape == (2, 2) and np.isfinite(logits.numpy()).all()

    output = tmp_path / "evaluation.json"
    _mock_app("evaluate", f"--run_dir={run_dir}", f"--output={output}")
    with open(output) as f:
        measured = json.load(f)["splits"]["test"]
    assert measured["agreement"] == pytest.approx(report["splits"]["test"]["agreement"], abs=1e-6)
    # The SavedModel reads text: its token ids are given back as words, and it
    # agrees with the teacher exactly as the .keras student on token ids does.
    _mock_app("evaluate", f"--run_dir={run_dir}", f"--student={run_dir / 'saved_model'}",
              f"--output={output}")
    with open(output) as f:
        served_measures = json.load(f)["splits"]["test"]
    for name in ("agreement", "predictive_kl", "student_accuracy"):
        assert served_measures[name] == pytest.approx(measured[name], abs=1e-5)


@pytest.mark.slow
def test_the_imdb_experiment_runs_at_smoke_scale_on_mock_reviews(tmp_path):
    # One process: TFDS' mock data is patched into this one only, not into spawned workers.
    result = _mock_app("sweep", "--experiment=imdb", "--scale=smoke", "--workers=1",
                       "--dataset=tfds:imdb_reviews:sequence_length=16,vocabulary_size=50",
                       "--verbose=0", f"--saved_models_dir={tmp_path}")
    with open(tmp_path / "experiments" / "imdb-smoke" / "results.json") as f:
        rows = json.load(f)
    assert [row["settings"] for row in rows] == [{"members": 1, "seed": 0},
                                                 {"members": 5, "seed": 0}]
    for row in rows:
        assert row["config"]["teacher_arch"] == row["config"]["student_arch"] == "lstm"
        assert 0 <= row["metrics"]["test_agreement"] <= 1
        assert 0 <= row["metrics"]["test_control_agreement"] <= 1
    assert "| members=5 | 1 |" in result.stdout


def test_the_gan_job_refuses_text_before_writing_anything(tmp_path):
    from keras_kd import config as config_lib
    from keras_kd import jobs

    x, y = _reviews(20, 0)
    path = tmp_path / "reviews.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    config = config_lib.build(jobs.GANConfig, {"dataset": f"npz:{path}",
                                               "saved_models_dir": str(tmp_path / "saved")})
    with pytest.raises(jobs.ConfigError, match="is text \\(token ids\\); the GAN makes images"):
        jobs.gan.run(config, verbose=0)
    assert not (tmp_path / "saved").exists()


def _save_texts(path, x_train, x_test=None, **arrays):
    x_test = x_train if x_test is None else x_test
    np.savez(path, x_train=x_train, y_train=np.arange(len(x_train)) % 2, x_test=x_test,
             y_test=np.arange(len(x_test)) % 2, **arrays)
    return f"npz:{path}"


def test_texts_that_are_not_utf8_are_named_with_their_place(tmp_path):
    texts = np.array([b"a good film", b"caf\xe9 au lait", b"a bad film", b"dull"])
    name = _save_texts(tmp_path / "latin1.npz", texts)
    with pytest.raises(data_lib.DatasetError, match=r"latin1.npz.*x_train\[1\] is not UTF-8 "
                       r"text \(invalid continuation byte at byte 3.*expected UTF-8"):
        data_lib.load(name)


@pytest.mark.parametrize("texts", [["", "", "", ""], ["", "...", "!?", " "]])
def test_texts_without_words_are_refused(tmp_path, texts):
    name = _save_texts(tmp_path / "empty.npz", np.array(texts))
    with pytest.raises(data_lib.DatasetError, match=r"x_train holds no words: its 4 texts are "
                       "empty once lowercased and stripped of punctuation"):
        data_lib.load(name)


def test_an_object_array_npz_names_the_array_and_how_to_save_it(tmp_path):
    texts = np.array(["a good film", "a bad film", "fine", "dull"], dtype=object)
    name = _save_texts(tmp_path / "pandas.npz", texts)
    with pytest.raises(data_lib.DatasetError, match=r"x_train in .*pandas.npz' is an object "
                       r"array .*x_train=np.asarray\(texts, dtype=str\)"):
        data_lib.load(name)


@pytest.mark.parametrize("bad, shown", [(None, "None"), (3, "3"), (float("nan"), "nan")])
def test_texts_in_memory_must_be_strings(bad, shown):
    with pytest.raises(data_lib.DatasetError, match=rf"x_train\[2\] is {shown} .*expected a "
                       "string"):
        data_lib.load_texts(["a good film", "a bad film", bad], [1, 0, 1], ["good"], [1])


def test_a_sequence_length_beyond_memory_is_refused_before_any_array_is_made():
    with pytest.raises(data_lib.DatasetError, match=r"sequence_length=100000000000 makes token "
                       r"ids of .* GiB for 4 texts, over half of this machine's"):
        data_lib.load_texts(["a good film", "a bad film", "fine"], [1, 0, 1], ["good"], [1],
                            sequence_length=10**11)


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet8", "mnist1d_cnn"])
def test_models_that_do_not_read_token_ids_are_refused_by_name(arch):
    data = data_lib.load_texts(["a good film", "a bad film"], [1, 0], ["good"], [1],
                               sequence_length=4)
    with pytest.raises(ValueError, match=rf"model='{arch}' reads .*, but dataset 'texts.*' "
                       r"holds tokens \(input shape \(4,\)\); models that read tokens: "
                       r"\['bilstm', 'lstm'\]"):
        keras_kd.models.for_data(arch, data.info)
