"""Bob's detector-timing gateware: gating, edge timing and dead time, binning, histograms,
counters and watchdog, and the merge of detection records into one stream.

Pipeline per cycle (``L`` symbols of ``S`` UIs, ``W = L * S`` UIs per word, ``C`` channels)::

    samples (C words of W UIs) --> ClickFrontEnd --> Binner --> RecordMerge --> records
                                     | gates           |  \\--> Histogram
                                     v                 v
                                 gate drive        Watchdog (alarm flag on records)
"""
