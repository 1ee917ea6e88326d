"""``atriumseg serve``: a DICOM node (C-ECHO, C-STORE SCP and SCU) and a watch folder that keep the model loaded.

One module per job: :mod:`.options` (what it is told), :mod:`.storage` (the storage folder and atomic instance
writes), :mod:`.state` (each series' durable state), :mod:`.scp` (the DICOM door), :mod:`.completion` (when a
series is complete), :mod:`.worker` (the one worker and its queue), :mod:`.cases` (one input segmented as
``atriumseg segment`` does), :mod:`.outbox` and :mod:`.courier` (SEGs owed and their delivery), :mod:`.send`
(C-STORE SCU), :mod:`.watch` (the folder door), :mod:`.retention` (``--keep-days``), :mod:`.status`
(``status.json`` and ``atriumseg status``), :mod:`.service` (wiring, start, stop). Importing this package
imports none of them.
"""
