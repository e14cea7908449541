"""Evaluation: classical and learned denoisers scored side by side on the same images.

- `scoring`: the batch-denoiser interface and the scores of one method on a stack of images
  or clips (PSNR, SSIM and tPSNR from core.metrics, ms per frame).
- `baselines`: the classical methods (noisy, blur, median, NLM, BM3D; BM4D on whole clips).
- `adapters`: a Keras model, and a temporal model over windows of frames, as batch denoisers.
- `sets`: every method on every evaluation set and noise level: the metrics, per-image rows
  and comparison images the evaluate stage writes.
- `summary`: those metrics as markdown tables, flat MLflow metrics and PSNR-per-sigma curves.

No I/O and no MLflow here: stages/evaluate reads the sets and models and writes what these
return; bench scripts and the register stage score with the same functions.
"""
