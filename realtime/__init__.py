"""emocam: real-time facial emotion recognition.

This package is the repository's realtime/ folder; train/ installs as emocam.train and engines/ (the shipped model)
as emocam.engines. The live side never imports the training side.

    import emocam
    rec = emocam.Recognizer()
    for frame, faces in rec.stream("clip.mp4"): ...
"""

from .backends import BackendError
from .batch import run_batch
from .contract import ModelError
from .extras import MissingExtra
from .faces import Faces, Frame
from .outputs import SinkError
from .overlay import annotate
from .pipeline import Pipeline, Timings
from .recognizer import DEFAULTS, Options, Recognizer, UsageProblem, default_model
from .records import columns, records
from .sinks import CsvSink, JsonlSink, Sink, VideoSink
from .sources import EndedEarly, Source, SourceError, open_source
from .summary import Summary

# Every error a user can cause, each told in one line (what the emocam command prints after "emocam: error:").
USER_ERRORS = (SourceError, ModelError, BackendError, SinkError, UsageProblem, MissingExtra)

__all__ = ["BackendError", "CsvSink", "DEFAULTS", "EndedEarly", "Faces", "Frame", "JsonlSink", "MissingExtra",
           "ModelError", "Options", "Pipeline", "Recognizer", "Sink", "SinkError", "Source", "SourceError", "Summary",
           "Timings", "USER_ERRORS", "UsageProblem", "VideoSink", "annotate", "columns", "default_model", "open_source",
           "records", "run_batch"]
