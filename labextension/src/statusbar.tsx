import { ReactWidget } from '@jupyterlab/apputils';
import React, { useEffect, useState } from 'react';

import { statusText } from './format';
import { RunsModel } from './model';

function Status(props: { model: RunsModel }): JSX.Element {
  const [, setTick] = useState(0);
  useEffect(() => {
    const bump = () => setTick(t => t + 1);
    props.model.changed.connect(bump);
    return () => {
      props.model.changed.disconnect(bump);
    };
  }, [props.model]);
  const summary = props.model.summary;
  return (
    <span className="jp-runctl-status" title="runctl: live runs and their burn rate">
      {summary ? statusText(summary.running, summary.rate) : 'runctl'}
    </span>
  );
}

/** "runctl: 2 running · $1.24/h" in the status bar. */
export class RunctlStatus extends ReactWidget {
  constructor(private readonly _model: RunsModel) {
    super();
    this.addClass('jp-runctl-statusbar');
  }

  render(): JSX.Element {
    return <Status model={this._model} />;
  }
}
