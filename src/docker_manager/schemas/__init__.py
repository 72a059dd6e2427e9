"""Request and response models (pydantic). No logic beyond validation lives here."""
