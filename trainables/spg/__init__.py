"""Spectral gradient (SpG, paper Sec. 2.2 / 3.1, Eq. 5-7, Fig. 2-3), by autograd through torch.fft.

For an operation ``Y = f(X)`` on a real ``M x M`` feature map, with ``x = fft2(X)`` and
``y = fft2(Y)`` (unnormalised DFT, frequencies in integer cycles per image,
``torch.fft.fftfreq(n) * n``), the SpG of an output frequency ``nu_i`` is the map over every input
frequency ``nu_j`` of ``|d y(nu_i) / d x(nu_j)|``, averaged over channels. For the decoder the
output is the CE component ``L_ce(nu_i)`` (paper Eq. 2) of its logits and ``x`` the spectrum of
the ASPP features. Eq. 5 says the map is close to a delta at ``nu_j = nu_i``: a feature component
at one frequency only moves the output (and the loss) at that frequency, which is what lets the
decoder drop high-frequency features (feature truncation).

Derivative convention (real input). ``X`` is real, so ``x(nu)`` and ``x(-nu)`` are conjugate and
not independent: perturbing ``x(nu_j)`` by a complex ``eps`` perturbs ``x(-nu_j)`` by
``conj(eps)``, i.e. ``dX = (2 / M^2) Re(eps exp(2 pi i nu_j . n / M))``. ``y(nu_i)`` is then a
function of ``eps`` and ``conj(eps)``; we report the Wirtinger derivative ``dy / d eps`` (with
``conj(eps)`` held fixed), the response to the ``+nu_j`` member of the pair. The response to the
``-nu_j`` member, ``dy / d conj(eps)``, is exactly the map's entry at ``-nu_j``, so the map over
all ``nu_j`` holds the whole real Jacobian. In terms of the spatial gradient ``g = dR / dX`` of a
real scalar ``R``: ``dR / dx(nu_j) = conj(G(nu_j)) / M^2`` with ``G = fft2(g)`` (also at the
self-conjugate frequencies 0 and Nyquist, where ``eps`` is real and this is the plain
derivative). A complex ``y = R1 + i R2`` takes ``dR1 + i dR2``. For a linear shift-invariant op
``y(nu) = k(nu) x(nu)`` this gives exactly ``k(nu_i)`` at ``nu_j = nu_i`` and 0 elsewhere, the
mirror ``-nu_i`` included: the circular conv is an exact delta.

Channels: ``|d y_o(nu_i) / d x_c(nu_j)|`` is averaged over the channel pairs the op connects:
every ``(o, c)`` for ``conv``, ``(c, c)`` for the channel-wise ``relu`` and ``upsample``, every
input channel ``c`` for the scalar ``L_ce(nu_i)`` of ``decoder``.

Ops (:data:`OPS`): ``conv``, a 3 x 3 conv with seeded random weights and **circular** padding
(periodic boundary, so the DFT diagonalises it and the delta is exact; zero padding would leak a
little energy off the delta); ``relu``; ``upsample``, bilinear x2 (``align_corners=False``, as the
models resize), whose output grid is ``2M`` so ``nu_i`` indexes the output spectrum and the
delta sits at ``nu_i`` wrapped onto the input grid; ``decoder``, the whole decoder of a project
model from its ASPP features to ``L_ce(nu_i)``, low-level (and DAN's mid-level) features held
fixed. The ``conv``, ``relu`` and ``upsample`` inputs are seeded standard-normal maps.

Summary per (op, nu_i): the peak ``nu_j`` and ``delta_fraction``, the share of
``sum_nu_j |SpG|^2`` at the delta ``nu_j = nu_i`` (1 for an exact delta; for ``relu`` it equals,
by Parseval, the fraction of active inputs, about 0.5 for zero-mean input, although the peak
stands far above every other entry). For ``decoder`` the delta is the conjugate pair
``nu_j = +-nu_i``: ``L_ce(nu)`` is real and ``L_ce(nu_i) = L_ce(-nu_i)``, so its derivative has
the same magnitude at ``x(nu_i)`` and ``x(-nu_i)`` and the share at ``nu_i`` alone could never
exceed 1/2 (for ``nu_i = 0`` the pair is one frequency).

Modules: :mod:`~trainables.spg.frequencies` (grids, checks, defaults), :mod:`~trainables.spg.maps`
(the derivative, maps, summaries, the built-in ops) and :mod:`~trainables.spg.decoder` (a model's
decoder).
"""

from __future__ import annotations

from trainables.spg.decoder import (
    DecoderInputs,
    build_decoder_model,
    ce_frequency_map,
    dataset_decoder_inputs,
    decoder_input_size,
    decoder_spg,
    random_decoder_inputs,
)
from trainables.spg.frequencies import (
    DEFAULT_CHANNELS,
    MAX_SIZE,
    MIN_SIZE,
    OPS,
    check_frequency,
    default_frequencies,
    frequencies,
    output_size,
)
from trainables.spg.maps import SpGMap, SpGOp, SpGSummary, builtin_op, conv_kernel, op_spg, spg

__all__ = [
    "DEFAULT_CHANNELS",
    "MAX_SIZE",
    "MIN_SIZE",
    "OPS",
    "DecoderInputs",
    "SpGMap",
    "SpGOp",
    "SpGSummary",
    "build_decoder_model",
    "builtin_op",
    "ce_frequency_map",
    "check_frequency",
    "conv_kernel",
    "dataset_decoder_inputs",
    "decoder_input_size",
    "decoder_spg",
    "default_frequencies",
    "frequencies",
    "op_spg",
    "output_size",
    "random_decoder_inputs",
    "spg",
]
