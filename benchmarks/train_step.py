"""Training images/s of InceptionV1 and ResNet50, fp32 / mixed precision, XLA off / on, vs peak.

One training step is what tfmetric's trainer runs: the embedding model (backbone -> LayerNorm ->
[Dense] -> L2) with the CosineProxy head, softmax cross-entropy on the cosine logits, gradients
of every trainable variable, one SGD-with-momentum update, in a `tf.function` (XLA:
`jit_compile=True`). Inputs are synthetic random tensors held on the device: no input pipeline.
Each configuration runs in its own subprocess, because the mixed-precision policy is global.

Model FLOPs per image: TensorFlow's graph profiler (`tf.compat.v1.profiler`, float_operation)
on the forward pass of the training model traced at batch 1, so convolutions and matmuls count
2 x multiply-adds; a training step counts as 3 x forward (forward, backward to activations,
backward to weights), the usual model-FLOPs convention. "% of peak" is
images/s x training FLOPs per image / peak: model FLOPs utilisation.

Peak: `--peak-tflops`, else the dense peak of the detected GPU for the configuration's math
(H100 SXM / H200: bf16 989, tf32 495, fp32 67; A100: 312 / 156 / 19.5). TensorFlow runs fp32
convolutions and matmuls as TF32 on Ampere and newer unless TF32 is disabled (`--no-tf32`), so
fp32 rows compare against the TF32 peak then. A CPU has no published peak this script can look
up, so its reference is measured: the best of many 3072 x 3072 fp32 matmuls in a process like the
workers', right before and right after each row (the higher one counts). It is a reference, not a peak: a
convolution can beat it (oneDNN's convolutions are tuned better than one matmul shape) and so can
a step timed while the machine was quieter than during the matmul. A row above 100% is therefore
marked and explained under the table rather than printed as an impossible "% of peak".

    python benchmarks/train_step.py            # CPU: 96x96, batch 16, 3 steps, fp32, XLA off/on
    python benchmarks/train_step.py --full     # the issue's grid: 224x224, batch 75, fp32/mixed
    python benchmarks/train_step.py --backbones resnet50 --precisions mixed --xla on
On a GPU the defaults are the full grid (224x224, batch 75, 30 timed steps).
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BACKBONES = ("inception_v1", "resnet50")
EMBEDDING_DIM = {"inception_v1": 512, "resnet50": 2048}  # the paper's dims; 2048 = no projection
# Dense peak TFLOPS per GPU and math: substring of the device name -> {math: TFLOPS}.
GPU_PEAK_TFLOPS = (
    ("H200", {"bf16": 989.0, "tf32": 494.7, "fp32": 66.9}),
    ("H100 PCIe", {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2}),
    ("H100", {"bf16": 989.0, "tf32": 494.7, "fp32": 66.9}),
    ("A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
)
RESULT_PREFIX = "RESULT "


# ---------------------------------------------------------------------------------------------
# Worker: one configuration, in its own process.


def model_flops_per_image(model, image_size):
    """Forward FLOPs of `model` on one image, counted by TF's graph profiler."""
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    graph = forward.get_concrete_function(tf.TensorSpec([1, image_size, image_size, 3], tf.float32)).graph
    options = (
        tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
        .with_empty_output()
        .build()
    )
    return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


def run_worker(spec):
    import keras
    import tensorflow as tf

    if not spec["tf32"]:
        tf.config.experimental.enable_tensor_float_32_execution(False)
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    if spec["precision"] == "mixed":
        keras.mixed_precision.set_global_policy(spec["mixed_policy"])
    keras.utils.set_random_seed(0)
    from tfmetric.models import build_embedding_model, build_training_model

    backbone, size, batch = spec["backbone"], spec["image_size"], spec["batch"]
    embedding = build_embedding_model(backbone, EMBEDDING_DIM[backbone], size, weights=None)
    model = build_training_model(embedding, spec["classes"])
    flops = model_flops_per_image(model, size)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    if keras.mixed_precision.global_policy().compute_dtype == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    scale = getattr(optimizer, "scale_loss", lambda loss: loss)
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function(jit_compile=spec["xla"])
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            scaled = scale(loss)
        optimizer.apply(tape.gradient(scaled, variables), variables)
        return loss

    images = tf.random.uniform([batch, size, size, 3], -1.0, 1.0, seed=1)
    labels = tf.random.uniform([batch], 0, spec["classes"], tf.int32, seed=2)
    start = time.perf_counter()
    for _ in range(spec["warmup"]):
        loss = step(images, labels)
    float(loss)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        loss = step(images, labels)
    final_loss = float(loss)  # waits for the device
    seconds = time.perf_counter() - start
    return {
        "images_per_s": spec["steps"] * batch / seconds,
        "step_ms": 1e3 * seconds / spec["steps"],
        "forward_flops": flops,
        "warmup_s": compile_s,
        "loss": final_loss,
    }


# ---------------------------------------------------------------------------------------------
# Driver: detect the device, run every configuration in a subprocess, print the table.


def detect_device():
    """(description, GPU name or None)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores)", None
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return f"{name} (1 of {len(gpus)} GPUs used)", name


def measure_cpu_matmul_tflops(n=3072, seconds=2.0, min_repeats=5):
    """Best fp32 TFLOPS of an n x n matmul over ~``seconds`` of repeats: the CPU rows' reference."""
    import tensorflow as tf

    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()
    best, repeats, began = float("inf"), 0, time.perf_counter()
    while repeats < min_repeats or time.perf_counter() - began < seconds:
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
        repeats += 1
    return 2 * n**3 / best / 1e12


def format_fraction(achieved, peak):
    """(text, over): the "% of peak" cell, marked with * above 100% (explained under the table)."""
    if not peak:
        return f"{'n/a':>9}", False
    percent = 100 * achieved / peak
    if percent > 100:
        return f"{percent:>7.1f}%*", True
    return f"{percent:>8.1f}%", False


def peak_for(args, gpu_name, precision, cpu_peak):
    """(peak TFLOPS or None, label)."""
    if args.peak_tflops:
        return args.peak_tflops, "--peak-tflops"
    if gpu_name is None:
        return cpu_peak, "CPU fp32 3072^2 matmul, measured (a reference, not a peak)"
    math = "bf16" if precision == "mixed" else ("tf32" if args.tf32 else "fp32")
    for key, peaks in GPU_PEAK_TFLOPS:
        if key in gpu_name:
            return peaks[math], f"{key} {math} dense"
    return None, "unknown GPU, pass --peak-tflops"


def run_config(spec, timeout):
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {proc.returncode}: {tail[:160]}"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="224x224, batch 75, fp32 and mixed (default on a GPU)")
    p.add_argument("--image-size", type=int, help="default: 224 full, 96 on a CPU")
    p.add_argument("--batch", type=int, help="default: 75 full, 16 on a CPU")
    p.add_argument("--steps", type=int, help="timed steps (default: 30 on a GPU, 3 on a CPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (tracing, XLA compilation)")
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    p.add_argument(
        "--precisions", nargs="+", choices=("fp32", "mixed"), help="default: fp32 and mixed full, fp32 on a CPU"
    )
    p.add_argument("--xla", nargs="+", choices=("off", "on"), default=["off", "on"])
    p.add_argument(
        "--mixed-policy",
        default="mixed_bfloat16",
        choices=("mixed_bfloat16", "mixed_float16"),
        help="Keras policy of the 'mixed' rows (bf16 needs no loss scaling)",
    )
    p.add_argument("--classes", type=int, default=98, help="CosineProxy classes (Cars196 train: 98)")
    p.add_argument("--peak-tflops", type=float, help="peak TFLOPS to compare against (overrides detection)")
    p.add_argument(
        "--no-tf32",
        dest="tf32",
        action="store_false",
        help="disable TF32 so fp32 rows run (and are compared) as true fp32",
    )
    p.add_argument("--timeout", type=int, default=900, help="seconds per configuration")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        result = {"tflops": measure_cpu_matmul_tflops()} if spec.get("matmul") else run_worker(spec)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    device, gpu_name = detect_device()
    full = args.full or gpu_name is not None
    size = args.image_size or (224 if full else 96)
    batch = args.batch or (75 if full else 16)
    steps = args.steps or (30 if gpu_name else 3)
    precisions = args.precisions or (["fp32", "mixed"] if full else ["fp32"])
    measure_reference = gpu_name is None and not args.peak_tflops
    reference = run_config({"matmul": True}, args.timeout).get("tflops") if measure_reference else None
    load_before = os.getloadavg()[0]
    print(
        f"Training step, {device}; {size}x{size}, batch {batch}, SGD momentum, {args.classes} proxies; "
        f"{args.warmup} warm-up + {steps} timed steps; mixed = {args.mixed_policy}; "
        f"{'' if gpu_name is None else 'TF32 ' + ('on; ' if args.tf32 else 'off; ')}"
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("FLOPs: tf.compat.v1.profiler float_operation on the forward graph (batch 1); train = 3 x forward")
    header = (
        f"{'backbone':<13} {'precision':<9} {'XLA':<4} {'images/s':>9} {'ms/step':>9} "
        f"{'fwd GFLOP/img':>13} {'train TFLOP/s':>13} {'peak TFLOP/s':>12} {'% of peak':>9} "
        f"{'warm-up s':>9}  peak source"
    )
    print(header)
    print("-" * len(header))
    flagged = False
    for backbone in args.backbones:
        for precision in precisions:
            for xla in args.xla:
                spec = {
                    "backbone": backbone,
                    "precision": precision,
                    "xla": xla == "on",
                    "image_size": size,
                    "batch": batch,
                    "steps": steps,
                    "warmup": args.warmup,
                    "classes": args.classes,
                    "mixed_policy": args.mixed_policy,
                    "tf32": args.tf32,
                }
                result = run_config(spec, args.timeout)
                prefix = f"{backbone:<13} {precision:<9} {xla:<4}"
                cpu_peak = None
                if measure_reference:  # right before and right after the row: the higher one counts
                    after = run_config({"matmul": True}, args.timeout).get("tflops")
                    cpu_peak = max((r for r in (reference, after) if r), default=None)
                    reference = after
                if "error" in result:
                    print(f"{prefix} failed: {result['error']}", flush=True)
                    continue
                peak, label = peak_for(args, gpu_name, precision, cpu_peak)
                achieved = result["images_per_s"] * 3 * result["forward_flops"] / 1e12
                fraction, over = format_fraction(achieved, peak)
                flagged |= over
                peak_text = f"{peak:>12.3g}" if peak else f"{'n/a':>12}"
                print(
                    f"{prefix} {result['images_per_s']:>9.1f} {result['step_ms']:>9.1f} "
                    f"{result['forward_flops'] / 1e9:>13.2f} {achieved:>13.3f} {peak_text} {fraction} "
                    f"{result['warmup_s']:>9.1f}  {label}",
                    flush=True,
                )
    if flagged and measure_reference:
        print(
            f"* above 100% of the measured matmul: the training step's convolutions ran faster per FLOP "
            f"than the 3072^2 matmul reference, or the machine was busier while the reference was timed "
            f"(load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end). The CPU's "
            f"true peak is higher than the reference; read these rows as 'at least as efficient as a large "
            f"matmul'."
        )
    elif flagged:
        print(
            "* above 100% of the stated peak, which no run can be: the peak is wrong for this device "
            "(pass --peak-tflops) or the 3 x forward FLOP convention overcounts this model's step."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
