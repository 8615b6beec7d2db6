"""The REST API's layer: dependencies (`deps`), request and response models (`schemas`), error
handling (`errors`), the body limit (`limits`) and one router per resource (studies, trials,
jobs, exports, tools). Routes call `service.domain`; `service.app.create_app` wires them."""
