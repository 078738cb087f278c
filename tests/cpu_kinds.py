"""Stand-ins for the three kinds of CPU whose runs the engine decides differently
(launch/onednn.py, launch/hardware.py), given through $DENSENET_CPU_FLAGS in place of
/proc/cpuinfo's flags:

- native-bf16: AVX512_BF16 (Cooper Lake, Zen 4; AMX-BF16 takes the same branch): oneDNN stays
  on without a probe, --dtype=auto picks bf16, bf16 is not warned about;
- vnni: AVX-512 with VNNI and no bf16 (Cascade Lake, Ice Lake): TensorFlow's default is oneDNN
  on, the probe decides, bf16 is emulated;
- plain: AVX2 only (Haswell, Zen 2/3): TensorFlow's default is oneDNN off, the probe decides.

A test that depends on the CPU either sets one of these itself for every process it starts, or
is marked `cpu_kind` and asserts what the CPU it runs on should get (`this_cpu`); `pytest
--cpu-kind=KIND` runs the whole session as that kind (`make test-cpu-kinds` runs the `cpu_kind`
tests under each), so that a developer on one kind of machine sees the other two fail before CI
does."""
from launch import onednn

PLAIN = "fpu sse2 avx avx2 fma"
VNNI = PLAIN + " avx512f avx512bw avx512dq avx512vl avx512_vnni"
NATIVE_BF16 = VNNI + " avx512_bf16"
KINDS = {"native-bf16": NATIVE_BF16, "vnni": VNNI, "plain": PLAIN}


def stand_in(kind):
    """{DENSENET_CPU_FLAGS: the kind's flags}: an environment update for a process to start."""
    return {onednn.CPU_FLAGS_VARIABLE: KINDS[kind]}


def this_cpu():
    """The kind of the CPU that this process stands for: the stand-in it was given, else the
    machine's own."""
    if onednn.native_bf16_flags():
        return "native-bf16"
    return "vnni" if onednn.tensorflow_default() else "plain"
