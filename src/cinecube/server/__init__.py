"""`cinecube serve`: an HTTP API, a job queue that survives restarts, and a web page.

    store.py     the data folder: SQLite (WAL) with jobs, API keys, uploads and workers; the
                 rules a restart follows; one server per folder
    worker.py    a worker process: loads the model once, claims queued jobs in order, runs them
                 through the pipeline and publishes the results through the output gate
    pool.py      starts the workers, notices one that died and fails its job with a reason
    requests.py  what a job request may hold, and its rehearsal: every check the pipeline makes,
                 with the pipeline's own messages, before a job is queued
    uploads.py   uploaded images and videos: type, size and decodability, stored in the folder
    app.py       the FastAPI application: /v1 endpoints, keys and limits, events, the page
    static/      the web page (plain HTML, CSS and a small script)

The server process never generates: a crash while generating takes down a worker, whose job
ends as failed with a reason, and the queue goes on. docs/serving.md describes the API.
"""
