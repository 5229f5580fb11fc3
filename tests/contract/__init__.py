"""One contract suite for every sink (issue 13): the same cases over each sink under test.

``harness`` defines a sink under test and the handle the cases use, ``sinks_under_test`` lists
the sinks (add one there), and the ``test_*`` modules are the cases.
"""
