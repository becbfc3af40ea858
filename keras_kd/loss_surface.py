"""The distillation loss on the plane through three sets of weights.

Stanton et al. (2021, section 6, figure 6) plot the distillation loss on the
plane through the student's initial weights, its final weights and the
teacher's weights: the student ends in a basin of its own, apart from the
teacher's, though the teacher's weights score a lower loss. `loss_plane`
computes that picture for a student of the teacher's architecture.

The plane is spanned by `u = final - initial` and the part of
`teacher - initial` orthogonal to `u` (Gram-Schmidt, over all weights
flattened), with `initial` at the origin; each grid point sets the model to
`initial + x * u_hat + y * v_hat` and evaluates the loss. Interpolated
BatchNorm statistics are not those of any network, so use an architecture
without them (`resnet8_ln`) for a well-defined surface.
"""

import keras
import numpy as np

from keras_kd import losses


def flat_weights(model):
    """All of `model.weights` as one float64 vector."""
    return np.concatenate([np.ravel(w.numpy()).astype(np.float64) for w in model.weights])


def set_flat_weights(model, vector):
    """Sets `model.weights` from a vector `flat_weights` made."""
    offset = 0
    for variable in model.weights:
        size = int(np.prod(variable.shape))
        variable.assign(vector[offset:offset + size].reshape(variable.shape))
        offset += size
    if offset != vector.size:
        raise ValueError(f"Expected {offset} weights; got a vector of {vector.size}.")


def plane_coordinates(initial, final, teacher):
    """`(u_hat, v_hat, points)`: an orthonormal basis of the plane through the
    three weight vectors, origin at `initial`, and each vector's `(x, y)`.

    Example:

    >>> u, v, points = plane_coordinates(np.zeros(3), np.array([2., 0, 0]),
    ...                                  np.array([1., 1, 0]))
    >>> points
    {'student_init': (0.0, 0.0), 'student_final': (2.0, 0.0), 'teacher': (1.0, 1.0)}
    """
    u = final - initial
    norm_u = np.linalg.norm(u)
    if norm_u == 0:
        raise ValueError("The student's final weights equal its initial weights.")
    u_hat = u / norm_u
    t = teacher - initial
    v = t - np.dot(t, u_hat) * u_hat
    norm_v = np.linalg.norm(v)
    if norm_v <= 1e-9 * np.linalg.norm(t):
        raise ValueError("The teacher's weights lie on the student's path: no plane.")
    v_hat = v / norm_v
    points = {
        "student_init": (0.0, 0.0),
        "student_final": (float(norm_u), 0.0),
        "teacher": (float(np.dot(t, u_hat)), float(norm_v)),
    }
    return u_hat, v_hat, points


def loss_plane(model, initial, final, teacher, inputs, teacher_logits, temperature,
               resolution=11, margin=0.25, batch_size=1024):
    """The distillation loss `T^2 * KL(teacher_T || model_T)` on a grid of the plane.

    Args:
        model: a model of the architecture the three weight vectors are of;
            its weights are restored when done.
        initial, final, teacher: weight vectors (`flat_weights`): the
            student's initial and final weights and the teacher's.
        inputs: an array of inputs (the distillation data, un-augmented).
        teacher_logits: the teacher's logits on `inputs`.
        temperature: the distillation temperature.
        resolution: grid points per axis (>= 2).
        margin: how far the grid reaches past the three points, as a share of
            their span on each axis.
        batch_size: inputs per forward pass.

    Returns:
        A JSON-ready dict: `x`, `y` (the grid's axes), `loss`
        (`[len(y)][len(x)]`), `points` (each weight vector's `(x, y)`) and
        `point_loss` (the loss at each of them).
    """
    if not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2; got {resolution!r}.")
    u_hat, v_hat, points = plane_coordinates(initial, final, teacher)
    xs = [p[0] for p in points.values()]
    ys = [p[1] for p in points.values()]
    x_axis = _axis(min(xs), max(xs), margin, resolution)
    y_axis = _axis(min(ys), max(ys), margin, resolution)
    saved = flat_weights(model)
    teacher_logits = np.asarray(teacher_logits, np.float32)

    def loss_at(x, y):
        set_flat_weights(model, (initial + x * u_hat + y * v_hat).astype(np.float32))
        total = 0.0
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start:start + batch_size], training=False)
            kl = losses.soft_target_kl(teacher_logits[start:start + batch_size], logits,
                                       temperature)
            total += float(keras.ops.convert_to_numpy(keras.ops.sum(kl)))
        return temperature**2 * total / len(inputs)

    try:
        grid = [[loss_at(x, y) for x in x_axis] for y in y_axis]
        point_loss = {name: loss_at(*point) for name, point in points.items()}
    finally:
        set_flat_weights(model, saved)
    return {
        "x": [float(x) for x in x_axis],
        "y": [float(y) for y in y_axis],
        "loss": grid,
        "points": {name: list(point) for name, point in points.items()},
        "point_loss": point_loss,
    }


def _axis(low, high, margin, resolution):
    span = high - low
    return np.linspace(low - margin * span, high + margin * span, resolution)
