# DeepOrb on a GPU machine: CUDA PyTorch base image, the package on top.
#   docker build -t deeporb .
#   docker run --gpus all -v $PWD/data:/app/data -v $PWD/outputs:/app/outputs deeporb \
#       train.py trainer=gpu data=beethoven_quartets
# Any of the entry points runs: encode.py, train.py, sample.py, evaluate.py, serve.py. WAVs need
# no system package (midirenderer + the soundfont pretty_midi ships). The image has the sweep extra
# (Optuna); not slurm, since SLURM jobs are submitted from a cluster's login node.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    WANDB_MODE=offline

WORKDIR /app
# dependencies first, so code changes do not reinstall them; torch comes from the base image
COPY pyproject.toml README.md ./
COPY deeporb/__init__.py deeporb/__init__.py
RUN pip install -e ".[sweep]"
COPY . .

ENTRYPOINT ["python"]
CMD ["train.py", "--help"]
