"""Models served over HTTP (issue 17): the teacher-scoring client (`client`) and the servers `cascadec run`
starts (`servers`)."""
