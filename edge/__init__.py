"""edge: offline voice commands for Raspberry Pi and Jetson class devices.

The public model API is one class::

    from edge import IntentClassifier
    result = IntentClassifier.load().classify("turn off the lights in the kitchen")
    result.intent, result.slot_dict()   # ('iot_hue_lightoff', {'house_place': 'kitchen'})

Imports are lazy so that small pieces (a backend, the settings loader) load without the rest.
"""

__version__ = "0.1.0"
__all__ = ["IntentClassifier", "Result", "Slot"]


def __getattr__(name):
    if name == "IntentClassifier":
        from edge.classifier import IntentClassifier

        return IntentClassifier
    if name in ("Result", "Slot"):
        from edge import result

        return getattr(result, name)
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
