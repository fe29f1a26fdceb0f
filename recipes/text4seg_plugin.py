"""ms-swift plugin for the text4seg recipes (``external_plugins: recipes/text4seg_plugin.py``).

Registers the template ``text4seg_llava1_5_hf``: ms-swift's ``llava1_5_hf`` template whose CLIP image
processor resizes the whole image to its crop size (336 x 336 for LLaVA-1.5) instead of resizing the
short side and centre-cropping. The answer's grid describes the whole image, so the model must see all of
it (see :mod:`text4seg.checkpoints.align`). The change is made on the loaded processor object, so
``swift export`` saves it into the merged model. ``swift export`` re-imports this plugin from the
checkpoint's args.json. It also registers the ms-swift callback ``text4seg_trained``
(:mod:`text4seg.training.trained_callback`), which writes ``text4seg.json`` into every checkpoint.

Kept in its own folder on purpose: ms-swift puts a plugin's folder on ``sys.path``.
"""

from text4seg.checkpoints.align import register_swift_templates

register_swift_templates()  # also the released models' own templates (text4seg_*_official)

# text4seg.json (scheme, grid, questions, answers the rows were trained with) into every checkpoint-N:
# the callback ``text4seg_trained`` that `text4seg train` adds to the recipe's ``callbacks``
from text4seg.training.trained_callback import register as register_trained_callback  # noqa: E402

register_trained_callback()
