"""Optimizers on TF's training ops (fused where TF's formula is the recipe's), with the recipe's
settings by default.

    sgd      momentum 0.9, Nesterov (ResourceApplyKerasMomentum: Keras' formula)
    adam     beta1 0.9, beta2 0.999, epsilon 1e-2 (ResourceApplyAdam)
    rmsprop  rho 0.9, epsilon 1e-2, no momentum: var -= lr * g / (sqrt(ms) + epsilon), as Keras
             2's RMSprop (the recipe's), written with plain ops: TF's fused ResourceApplyRMSProp,
             and Keras 3, put epsilon inside the sqrt, which with epsilon 1e-2 is another
             optimizer; the fused op is used only when momentum > 0, as Keras 2 does.
    lars     momentum SGD with a layer-wise trust ratio and the weight decay inside the update
             (see LARS), for global batches past a few thousand examples.

Slots are created by `build(variables)` before the first step (so that they can be broadcast
and checkpointed) and kept in variable order. `decoupled_weight_decay` shrinks each variable by
lr * decay before the update (AdamW/SGDW style); the recipe's L2 penalty lives in the loss.
"""
import tensorflow as tf

NAMES = ("sgd", "adam", "rmsprop", "lars")


class Optimizer(tf.Module):
    slot_names = ()
    # The variables it updates belong to the net: neither walked as ours (optimizer.variables)
    # nor tracked, so that checkpoints keep them under net/... and not optimizer/...
    _TF_MODULE_IGNORED_PROPERTIES = frozenset(("_variables",)) | \
        tf.Module._TF_MODULE_IGNORED_PROPERTIES

    def __init__(self, decoupled_weight_decay=0.0, name=None):
        super().__init__(name=name)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.decoupled_weight_decay = decoupled_weight_decay
        self.slots = []  # per variable: [slot variables in slot_names order]
        self.__dict__["_variables"] = None

    def build(self, variables):
        """Creates the slots of `variables` (the list every later `apply` gets, in order);
        once: building again for the same variables keeps the slots and their values."""
        variables = list(variables)
        if self._variables is not None and len(variables) == len(self._variables) and all(
                a is b for a, b in zip(variables, self._variables)):
            return
        self.__dict__["_variables"] = variables  # bypasses checkpoint tracking
        with tf.name_scope(self.name):
            self.slots = [[tf.Variable(tf.zeros_like(v), trainable=False,
                                       name=f"{v.name.split(':')[0]}/{slot}")
                           for slot in self.slot_names] for v in self._variables]

    def slot_variables(self):
        return [s for group in self.slots for s in group]

    def apply(self, grads, lr):
        """One update of the built variables with `grads` at learning rate `lr` (a scalar)."""
        if self._variables is None:
            raise RuntimeError("call build(variables) before apply")
        lr = tf.cast(lr, tf.float32)
        if self.decoupled_weight_decay:
            for v in self._variables:
                v.assign_sub(lr * self.decoupled_weight_decay * v)
        for v, g, slots in zip(self._variables, grads, self.slots):
            self._apply_one(v, tf.cast(g, v.dtype), slots, lr)
        self.iterations.assign_add(1)


class SGD(Optimizer):
    slot_names = ("momentum",)

    def __init__(self, momentum=0.9, nesterov=True, **kwargs):
        super().__init__(name="sgd", **kwargs)
        self.momentum, self.nesterov = momentum, nesterov

    def _apply_one(self, var, grad, slots, lr):
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=var.handle, accum=slots[0].handle, lr=lr, grad=grad,
            momentum=tf.constant(self.momentum, tf.float32), use_nesterov=self.nesterov)


class Adam(Optimizer):
    slot_names = ("m", "v")

    def __init__(self, beta1=0.9, beta2=0.999, epsilon=1e-2, **kwargs):
        super().__init__(name="adam", **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def _apply_one(self, var, grad, slots, lr):
        t = tf.cast(self.iterations + 1, tf.float32)
        tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=slots[0].handle, v=slots[1].handle,
            beta1_power=tf.pow(self.beta1, t), beta2_power=tf.pow(self.beta2, t), lr=lr,
            beta1=tf.constant(self.beta1), beta2=tf.constant(self.beta2),
            epsilon=tf.constant(self.epsilon), grad=grad)


class RMSprop(Optimizer):
    slot_names = ("rms", "momentum")

    def __init__(self, rho=0.9, epsilon=1e-2, momentum=0.0, **kwargs):
        super().__init__(name="rmsprop", **kwargs)
        self.rho, self.epsilon, self.momentum = rho, epsilon, momentum

    def _apply_one(self, var, grad, slots, lr):
        if self.momentum:
            tf.raw_ops.ResourceApplyRMSProp(
                var=var.handle, ms=slots[0].handle, mom=slots[1].handle, lr=lr,
                rho=tf.constant(self.rho), momentum=tf.constant(self.momentum),
                epsilon=tf.constant(self.epsilon), grad=grad)
            return
        ms = slots[0].assign(self.rho * slots[0] + (1.0 - self.rho) * tf.square(grad))
        var.assign_sub(lr * grad / (tf.sqrt(ms) + self.epsilon))


class LARS(Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman, Ginsburg 2017, arXiv:1708.03888), as
    TF 1.15's tf.contrib.opt.LARSOptimizer computes it with the skip list MLPerf's ResNet-50
    reference gives it (batch norm parameters and biases). For a variable w with gradient g:

        trust = eta * ||w|| / (||g|| + weight_decay * ||w|| + epsilon)   (1 if ||w|| or ||g|| is 0)
        v     = momentum * v + lr * trust * (g + weight_decay * w)
        w     = w - v

    `excluded` variables (BN gamma and beta, biases) take neither the trust ratio nor the decay:
    v = momentum * v + lr * g. The decay lives here, so the loss carries no L2 penalty."""
    slot_names = ("momentum",)

    def __init__(self, *, momentum=0.9, eta=0.001, epsilon=0.0, weight_decay=0.0, excluded=(),
                 **kwargs):
        super().__init__(name="lars", **kwargs)
        self.momentum, self.eta, self.epsilon = momentum, eta, epsilon
        self.weight_decay = weight_decay
        self._excluded = {v.ref() for v in excluded}

    def _apply_one(self, var, grad, slots, lr):
        if var.ref() not in self._excluded:
            w_norm, g_norm = tf.norm(var), tf.norm(grad)
            ratio = self.eta * w_norm / (g_norm + self.weight_decay * w_norm + self.epsilon)
            trust = tf.where(tf.logical_and(w_norm > 0, g_norm > 0), ratio, 1.0)
            lr = lr * trust
            grad = grad + self.weight_decay * var
        # ResourceApplyMomentum with lr 1: accum = momentum * accum + grad; var -= accum.
        tf.raw_ops.ResourceApplyMomentum(
            var=var.handle, accum=slots[0].handle, lr=tf.constant(1.0, var.dtype),
            grad=lr * grad, momentum=tf.constant(self.momentum, var.dtype), use_nesterov=False)


def build(name, **options):
    classes = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "lars": LARS}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(NAMES)}")
    return classes[name](**options)
