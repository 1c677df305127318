"""The API's endpoints, one :class:`fastapi.APIRouter` per area: :mod:`.generate` (jobs, their
events and files), :mod:`.catalog` (templates, personas), :mod:`.health` (health, metrics).
:func:`~ai_content_pipeline.service.app.create_app` includes them."""
