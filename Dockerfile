# The Hugging Face Space (README front matter: sdk docker) and anyone's container: the README's
# install command, then app.py on 0.0.0.0:7860. A Docker Space because ml-100k's files come from
# the recbole wheel installed without its dependencies, which a requirements file cannot say.
FROM python:3.11-slim

RUN useradd -m -u 1000 user
USER user
ENV HOME=/home/user PATH=/home/user/.local/bin:$PATH \
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=7860
WORKDIR /home/user/app

COPY --chown=user requirements.txt requirements-data.txt ./
# torch's CPU build (the image has no GPU): the pinned version from PyTorch's CPU index
RUN pip install --no-cache-dir --user --extra-index-url https://download.pytorch.org/whl/cpu \
        -r requirements.txt \
    && pip install --no-cache-dir --user --no-deps -r requirements-data.txt

COPY --chown=user . .
EXPOSE 7860
CMD ["python", "app.py"]
