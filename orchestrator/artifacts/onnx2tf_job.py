"""One onnx2tf conversion, run by onnx2tf's own Python (see onnx2tf_env).

Usage: python onnx2tf_job.py JOB.json. The job names the ONNX file, the output folder, the
inputs to keep in their NCHW layout and, for int8, the calibration arrays. The outcome goes
to result.json in the output folder. This file imports nothing from edgebench: it runs in
an environment that has only onnx2tf and what onnx2tf pins.
"""

import json
import os
import sys


def main(job_path: str) -> int:
    with open(job_path) as handle:
        job = json.load(handle)
    # onnx2tf simplifies with the `onnxsim` command of its own environment.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    result = {"ok": False}
    try:
        import onnx2tf

        result["version"] = onnx2tf.__version__
        onnx2tf.convert(
            input_onnx_file_path=job["onnx"],
            output_folder_path=job["out"],
            non_verbose=True,
            keep_ncw_or_nchw_or_ncdhw_input_names=job["keep_layout"] or None,
            copy_onnx_input_output_names_to_tflite=True,
            output_integer_quantized_tflite=bool(job["calibration"]),
            custom_input_op_name_np_data_path=job["calibration"] or None,
        )
        result["ok"] = True
    except BaseException as exc:  # onnx2tf also ends with sys.exit(1): report, not crash
        lines = str(exc).strip().splitlines() or [""]
        result["error"] = f"{type(exc).__name__}: {lines[-1][:400]}"
    with open(os.path.join(job["out"], "result.json"), "w") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
