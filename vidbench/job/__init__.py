"""One job of a run, in the child that works on it: its context (:mod:`.context`: suite, plugins, dataset, files),
the training session a trainer plugin gets (:mod:`.session`), training and evaluating it (:mod:`.train`),
measuring one optimization of it (:mod:`.measure`), the warm timing process of a torch artifact
(:mod:`.timer`) and the artifact's model card (:mod:`.card`)."""
